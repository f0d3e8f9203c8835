/**
 * Used by scripts/image-test.sh: `node --import tsx test/images/job-check.ts <server url> <admin
 * password> <user> [worker name]`. Waits for the worker to be idle, submits the model-free prompt
 * for <user> through POST /api/v1/jobs and waits for it to complete. Prints one JSON line (the
 * job's id, worker and outputs); exits 1 with the reason otherwise.
 */
import { modelFreePrompt } from '../support/prompts.js';
import { waitFor } from '../support/processes.js';
import { basicAuth, jsonRequest } from '../support/serve.js';

const [serverUrl, password, user, workerName] = process.argv.slice(2);
if (!serverUrl || !password || !user) {
  console.error('usage: job-check.ts <server url> <admin password> <user> [worker name]');
  process.exit(2);
}
const auth = basicAuth('admin', password);

const api = <T>(method: string, path: string, body?: unknown) =>
  jsonRequest<T>(serverUrl, auth, method, path, body);

interface Job {
  id: string;
  status: string;
  workerId: string | null;
  outputs: { filename: string; type: string }[];
  error: unknown;
}

async function main(): Promise<void> {
  await waitFor(
    async () => {
      const r = await api<{ workers: { name: string; status: string }[] }>('GET', '/api/v1/workers');
      return r.json.workers.some((w) => (!workerName || w.name === workerName) && w.status === 'idle');
    },
    60_000,
    `worker ${workerName ?? ''} idle`,
  );
  const submitted = await api<Job>('POST', '/api/v1/jobs', { user, prompt: modelFreePrompt() });
  if (submitted.status !== 201)
    throw new Error(`submit answered ${submitted.status}: ${JSON.stringify(submitted.json)}`);
  const job = await waitFor(
    async () => {
      const j = (await api<Job>('GET', `/api/v1/jobs/${submitted.json.id}`)).json;
      return ['completed', 'failed', 'cancelled'].includes(j.status) ? j : null;
    },
    60_000,
    `job ${submitted.json.id} to finish`,
  );
  if (job.status !== 'completed' || job.outputs.length === 0)
    throw new Error(`job ended ${job.status}: ${JSON.stringify(job.error)}`);
  console.log(JSON.stringify({ id: job.id, status: job.status, worker: job.workerId, outputs: job.outputs }));
}

main().catch((err: unknown) => {
  console.error(`job-check: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
