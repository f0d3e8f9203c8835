/**
 * A large output end to end (issue #16): a video of BENCH_BIGOUTPUT_MB (default 2048) MiB written
 * by the ComfyUI stand-in goes ComfyUI `/view` → worker agent → control plane → file store (local,
 * and unless BENCH_BIGOUTPUT_S3=0 a real s3rver) → participant's `/<user>/api/view`. The agent and
 * the control plane are the compiled CLI (dist/, `comfy-multi worker` and `serve`), each in its own
 * process; their resident memory is sampled every 100 ms from /proc (see test/support/big-output.ts).
 *
 * Per store:
 * - `view_mb_per_s`: the stand-in's `/view` read directly (the GPU machine's disk hop, reference);
 * - `upload_mb_per_s`: ComfyUI's `executed` → job complete with the file stored. The hops
 *   ComfyUI → agent → control plane → store are one pipelined stream, so this is their common rate;
 * - `agent_rss_{before,max,after}_mb`, `server_rss_{before,max,after}_upload_mb`: around that upload;
 * - `download_mb_per_s`, `server_rss_max_download_mb`, `server_rss_after_download_mb`: the whole
 *   file back through `/<user>/api/view`; `range_tail_ms`: its last MiB by `Range`.
 * Flat memory: the max stays within tens of MB of the before, whatever the file size.
 *
 * Run: `npm run bench -- bigoutput` (BENCH_BIGOUTPUT_MB=256 for a quick run). Needs ~2× the size
 * free in the temp folder.
 */
import { runBigOutput } from '../test/support/big-output.js';

type Figures = Record<string, number>;
const MiB = 1024 * 1024;
const r1 = (n: number) => Math.round(n * 10) / 10;
const mb = (n: number) => r1(n / MiB);

export async function benchBigOutput(): Promise<Figures> {
  const bytes = Number(process.env.BENCH_BIGOUTPUT_MB ?? 2048) * MiB;
  const stores = process.env.BENCH_BIGOUTPUT_S3 === '0' ? (['local'] as const) : (['local', 's3'] as const);
  const out: Figures = {};
  for (const files of stores) {
    const r = await runBigOutput({ bytes, files, built: true });
    if (r.sha256.stored !== r.sha256.source || r.sha256.downloaded !== r.sha256.source || !r.range.matches)
      throw new Error(`${files}: the bytes changed on the way (${JSON.stringify(r.sha256)})`);
    const rate = (ms: number) => r1(bytes / MiB / (ms / 1000));
    Object.assign(out, {
      [`${files}.file_mb`]: mb(bytes),
      [`${files}.view_mb_per_s`]: rate(r.viewMs),
      [`${files}.upload_mb_per_s`]: rate(r.uploadMs),
      [`${files}.agent_rss_before_mb`]: mb(r.rss.agentUpload.before),
      [`${files}.agent_rss_max_mb`]: mb(r.rss.agentUpload.peak),
      [`${files}.agent_rss_after_mb`]: mb(r.rss.agentUpload.after),
      [`${files}.server_rss_before_upload_mb`]: mb(r.rss.serverUpload.before),
      [`${files}.server_rss_max_upload_mb`]: mb(r.rss.serverUpload.peak),
      [`${files}.server_rss_after_upload_mb`]: mb(r.rss.serverUpload.after),
      [`${files}.download_mb_per_s`]: rate(r.downloadMs),
      [`${files}.server_rss_max_download_mb`]: mb(r.rss.serverDownload.peak),
      [`${files}.server_rss_after_download_mb`]: mb(r.rss.serverDownload.after),
      [`${files}.range_tail_ms`]: r1(r.range.ms),
    });
  }
  return out;
}
