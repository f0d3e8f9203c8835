/**
 * Participants' own LoRAs on a worker. A job whose loader names one of its owner's LoRAs gets the
 * file from the control plane (`GET /worker/v1/jobs/:id/loras/<name>`, allowed only to the worker
 * holding that job), kept in ComfyUI's loras folder under `_users/<hash of the user>/<sha256
 * prefix>/<name>`; the
 * prompt is rewritten to that path here, on the agent, so the participant never sees it and no
 * other participant can name it (the control plane refuses `_users/…` at submit, and so does this).
 *
 * Files are cached by sha256 (`_users/.blobs/<sha256>`, no extension, so ComfyUI never lists it):
 * a second job, or another participant uploading the same bytes, does not download again, and a
 * participant's replaced LoRA (new bytes, same name) is fetched afresh. A download is checked
 * against the sha256 the control plane stated before it is used; nothing half-written is named.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ObjectInfo } from '../../comfy/protocol.js';
import { extractModelRefs } from '../../comfy/prompt-tools.js';
import { isPrivateLoraName, PRIVATE_LORA_DIR } from '../../loras/own-loras.js';
import type { ComfyPrompt } from '../../store/types.js';
import { endpoint, type ControlPlaneHttp } from './files.js';
import { encodePath, getStream, requestJson } from './http-stream.js';

/** A prompt that names a LoRA this worker may not give it. Fails the job as an invalid prompt. */
export class LoraRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraRefused';
  }
}

interface OwnLora {
  name: string;
  size: number;
  sha256: string;
}

const SHA_RE = /^[0-9a-f]{64}$/;

/** The per-user folder name: stable across restarts (so the cache survives), not the user's name. */
export function userLoraFolder(user: string): string {
  return createHash('sha256').update(`comfy-multi participant lora\u0000${user}`).digest('hex').slice(0, 16);
}

export class LoraCache {
  /** Downloads by sha256 under way, so two jobs needing the same file fetch it once. */
  private readonly inflight = new Map<string, Promise<string>>();
  /** Files fetched from the control plane since start (for status and tests). */
  downloads = 0;

  constructor(
    /** ComfyUI's `models/loras` folder; without it, jobs using own LoRAs fail with a clear message. */
    private readonly dir: string | undefined,
    private readonly cp: ControlPlaneHttp,
    private readonly log: Logger,
  ) {}

  /**
   * The prompt with every loader input that names one of the owner's own LoRAs pointed at this
   * worker's copy (fetched first if needed). Unchanged when the prompt names none.
   */
  async prepare(
    job: { jobId: string; user: string },
    prompt: ComfyPrompt,
    objectInfo: ObjectInfo | undefined,
    signal?: AbortSignal,
  ): Promise<ComfyPrompt> {
    const refs = extractModelRefs(prompt, objectInfo).filter((r) => r.folder === 'loras');
    if (refs.length === 0) return prompt;
    for (const r of refs)
      if (isPrivateLoraName(r.name))
        throw new LoraRefused(`${r.input}: '${r.name}' names a folder reserved for participants' own LoRAs.`);
    const own = await this.ownLoras(job.jobId, signal);
    const wanted = refs.filter((r) => own.has(r.name));
    if (wanted.length === 0) return prompt;
    if (!this.dir)
      throw new LoraRefused(
        'This worker cannot load participants’ own LoRAs: its agent was started without --loras-dir (ComfyUI’s models/loras folder).',
      );
    const out: ComfyPrompt = { ...prompt };
    const folder = userLoraFolder(job.user);
    for (const r of wanted) {
      const entry = own.get(r.name)!;
      const path = await this.place(job, folder, entry, signal);
      const node = out[r.nodeId]!;
      out[r.nodeId] = { ...node, inputs: { ...node.inputs, [r.input]: path } };
    }
    return out;
  }

  private async ownLoras(jobId: string, signal?: AbortSignal): Promise<Map<string, OwnLora>> {
    const res = await requestJson(
      'GET',
      endpoint(this.cp, `/jobs/${encodeURIComponent(jobId)}/loras`),
      { authorization: `Bearer ${this.cp.token}` },
      undefined,
      signal ? { signal } : {},
    );
    const list = (res.json as { loras?: unknown } | null)?.loras;
    const out = new Map<string, OwnLora>();
    if (!Array.isArray(list)) return out;
    for (const e of list as Partial<OwnLora>[]) {
      if (
        typeof e.name === 'string' &&
        !e.name.includes('/') &&
        !e.name.startsWith('.') &&
        typeof e.size === 'number' &&
        typeof e.sha256 === 'string' &&
        SHA_RE.test(e.sha256)
      )
        out.set(e.name, { name: e.name, size: e.size, sha256: e.sha256 });
    }
    return out;
  }

  /**
   * Puts the LoRA at `_users/<folder>/<sha256 prefix>/<name>` (from the cache, or fetched);
   * returns that path. The content is part of the path so that a participant's replaced LoRA
   * (same name, new bytes) is a new file name to ComfyUI, whose cache would otherwise reuse the
   * model it loaded from the old one.
   */
  private async place(
    job: { jobId: string },
    folder: string,
    entry: OwnLora,
    signal?: AbortSignal,
  ): Promise<string> {
    const blob = await this.blob(job, entry, signal);
    const version = entry.sha256.slice(0, 16);
    const rel = `${PRIVATE_LORA_DIR}/${folder}/${version}/${entry.name}`;
    const parent = join(this.dir!, PRIVATE_LORA_DIR, folder, version);
    const target = join(parent, entry.name);
    const have = await stat(target).catch(() => null);
    if (have?.isFile() && have.size === entry.size) return rel;
    await mkdir(parent, { recursive: true });
    // A new name appears complete or not at all (ComfyUI may list the folder meanwhile).
    const tmp = join(parent, `.${randomUUID()}.tmp`);
    try {
      await link(blob, tmp).catch(() => copyFile(blob, tmp));
      await rename(tmp, target);
    } finally {
      await rm(tmp, { force: true });
    }
    return rel;
  }

  /** The cached file with this sha256, fetched once if absent. */
  private blob(job: { jobId: string }, entry: OwnLora, signal?: AbortSignal): Promise<string> {
    const running = this.inflight.get(entry.sha256);
    if (running) return running;
    const p = this.fetchBlob(job, entry, signal).finally(() => this.inflight.delete(entry.sha256));
    this.inflight.set(entry.sha256, p);
    return p;
  }

  private async fetchBlob(job: { jobId: string }, entry: OwnLora, signal?: AbortSignal): Promise<string> {
    const blobs = join(this.dir!, PRIVATE_LORA_DIR, '.blobs');
    const blob = join(blobs, entry.sha256);
    const cached = await stat(blob).catch(() => null);
    if (cached?.isFile() && cached.size === entry.size) return blob;
    await mkdir(blobs, { recursive: true });
    const url = endpoint(this.cp, `/jobs/${encodeURIComponent(job.jobId)}/loras/${encodePath(entry.name)}`);
    const res = await getStream(url, { authorization: `Bearer ${this.cp.token}` }, signal);
    const hash = createHash('sha256');
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    const part = `${blob}.${randomUUID()}.part`;
    try {
      await pipeline(res, hashing, createWriteStream(part, { mode: 0o644 }), signal ? { signal } : {});
      const got = hash.digest('hex');
      if (got !== entry.sha256)
        throw new Error(`the LoRA ${entry.name} arrived with sha256 ${got}, not ${entry.sha256}`);
      await rename(part, blob);
    } finally {
      await rm(part, { force: true });
    }
    this.downloads++;
    this.log.info({ jobId: job.jobId, sha256: entry.sha256, size: entry.size }, 'fetched a participant LoRA');
    return blob;
  }
}
