/**
 * The stand-in's execution record (exec-log.ts): every prompt it really runs leaves a `start` and
 * an `end` with the outcome, in memory and, with `executionLog`, in a JSON-lines file.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { modelFreePrompt } from '../prompts.js';
import type { ExecutionRecord } from './exec-log.js';
import { startStandin, type Standin } from './server.js';
import { RecordingClient, http, postJson } from './test-helpers.js';

let standin: Standin | null = null;
let dir: string | null = null;

afterEach(async () => {
  await standin?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  standin = null;
  dir = null;
});

async function submit(s: Standin, prompt: unknown, clientId: string): Promise<string> {
  const res = await postJson(`${s.url}/api/prompt`, { prompt, client_id: clientId });
  expect(res.status).toBe(200);
  return res.json.prompt_id;
}

const brief = (records: readonly ExecutionRecord[]) =>
  records.map((r) => [r.event, r.promptId, r.outcome ?? r.prefixes]);

describe('comfyui stand-in: execution record', () => {
  it('records start and end of each execution with its outcome, in memory and in the file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'standin-exec-'));
    const file = join(dir, 'executions.jsonl');
    const s = (standin = await startStandin({ executionLog: file }));
    const c = await RecordingClient.connect(s.wsUrl, 'x');

    const done = await submit(s, modelFreePrompt({ filenamePrefix: 'alice/job1/ci', color: 1 }), 'x');
    await c.waitForEnd(done);
    const slow = await submit(s, modelFreePrompt({ color: 2, sleep: { seconds: 5, steps: 50 } }), 'x');
    await c.waitFor((m) => m.some((x) => x.kind === 'text' && x.type === 'progress'));
    await http(`${s.url}/api/interrupt`, { method: 'POST' });
    await c.waitForEnd(slow, 2000);
    await s.waitForIdle();

    expect(brief(s.executions)).toEqual([
      ['start', done, ['alice/job1/ci']],
      ['end', done, 'completed'],
      ['start', slow, ['ci']],
      ['end', slow, 'interrupted'],
    ]);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l) as ExecutionRecord)).toEqual(s.executions);
    expect(s.executions.every((r) => r.pid === process.pid && r.at > 0)).toBe(true);
    await c.close();
  });

  it('marks an execution cut short by a restart as abandoned', async () => {
    const s = (standin = await startStandin());
    const c = await RecordingClient.connect(s.wsUrl, 'y');
    const id = await submit(s, modelFreePrompt({ sleep: { seconds: 5, steps: 50 } }), 'y');
    await c.waitFor((m) => m.some((x) => x.kind === 'text' && x.type === 'progress'));
    await s.restart();
    await new Promise((r) => setTimeout(r, 300));
    expect(brief(s.executions)).toEqual([
      ['start', id, ['ci']],
      ['end', id, 'abandoned'],
    ]);
    await c.close();
  });
});
