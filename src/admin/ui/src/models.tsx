import { useState } from 'preact/hooks';
import type { ModelDownloadView, WorkshopModelView } from '../../view-types.js';
import { action } from './api.js';
import type { Ctx } from './ctx.js';
import { Dialog } from './dialog.js';
import { clock, duration, fullTime } from './format.js';
import { Empty, Progress, Section } from './section.js';

/** The folders the server accepts (MODEL_DOWNLOAD_FOLDERS), most used first. */
const FOLDERS = [
  'checkpoints',
  'diffusion_models',
  'text_encoders',
  'vae',
  'loras',
  'clip_vision',
  'controlnet',
  'upscale_models',
  'latent_upscale_models',
  'audio_encoders',
  'model_patches',
  'embeddings',
  'clip',
  'style_models',
  'gligen',
  'hypernetworks',
  'photomaker',
  'vae_approx',
];

const STATE_TEXT: Record<ModelDownloadView['state'], string> = {
  queued: 'waiting',
  checking: 'checking',
  downloading: 'downloading',
  verifying: 'verifying',
  done: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
};

const ACTIVE = new Set<ModelDownloadView['state']>(['queued', 'checking', 'downloading', 'verifying']);

function bytes(n: number | null): string {
  if (n === null) return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** The file name a URL ends in, as the server would pick it. */
function nameFromUrl(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.split('/').pop() ?? '');
  } catch {
    return '';
  }
}

function AddModelDialog({ ctx, onClose }: { ctx: Ctx; onClose: () => void }) {
  const capable = ctx.s.workers.filter((w) => w.connected);
  const [url, setUrl] = useState('');
  const [folder, setFolder] = useState('checkpoints');
  const [filename, setFilename] = useState('');
  const [sha256, setSha256] = useState('');
  const [token, setToken] = useState('');
  const [target, setTarget] = useState('all');
  const [keep, setKeep] = useState(true);
  const [busy, setBusy] = useState(false);
  const guessed = nameFromUrl(url.trim());
  const shaOk = sha256.trim() === '' || /^[0-9a-fA-F]{64}$/.test(sha256.trim());
  // Nothing to do: no GPU to download onto and not kept for later ones.
  const blocked = url.trim() === '' || !shaOk || (!keep && capable.length === 0);
  const submit = async () => {
    setBusy(true);
    try {
      const entry = {
        url: url.trim(),
        folder,
        ...(filename.trim() ? { filename: filename.trim() } : {}),
        ...(sha256.trim() ? { sha256: sha256.trim() } : {}),
        ...(token.trim() ? { token: token.trim() } : {}),
      };
      // On the list first: a GPU joining while this starts fetches it too.
      if (keep) await action('/models/workshop/add', entry);
      const r =
        capable.length > 0
          ? await action<{ downloads: ModelDownloadView[] }>('/models/downloads', {
              ...entry,
              workers: target === 'all' ? 'all' : [target],
            })
          : { downloads: [] };
      onClose();
      const first = r.downloads[0];
      ctx.notify(
        r.downloads.length > 0
          ? `Downloading ${folder}/${first?.filename ?? guessed} onto ${r.downloads.length} worker(s).`
          : `${folder}/${guessed} is on the workshop list: GPUs fetch it when they connect.`,
      );
    } catch (err) {
      setBusy(false);
      ctx.notify(err instanceof Error ? err.message : String(err), 'error');
    }
  };
  return (
    <Dialog
      title="Add a model to the workers"
      onClose={onClose}
      footer={
        <>
          <button type="button" class="btn btn-cancel" onClick={onClose} disabled={busy}>
            Keep as is
          </button>
          <button
            type="submit"
            form="model-form"
            class="btn btn-primary"
            disabled={busy || blocked}
            aria-busy={busy}
          >
            {busy ? 'Working…' : 'Download'}
          </button>
        </>
      }
    >
      <form
        id="model-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (!blocked) void submit();
        }}
      >
        <div class="fields">
          <label class="field">
            <span>URL (Hugging Face …/resolve/main/file, or any https link)</span>
            <input
              type="url"
              name="url"
              required
              placeholder="https://huggingface.co/org/repo/resolve/main/model.safetensors"
              value={url}
              onInput={(e) => setUrl((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="field">
            <span>Folder</span>
            <select
              name="folder"
              value={folder}
              onChange={(e) => setFolder((e.target as HTMLSelectElement).value)}
            >
              {FOLDERS.map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
          </label>
          <label class="field">
            <span>File name (default: {guessed || 'from the URL'})</span>
            <input
              type="text"
              name="filename"
              value={filename}
              onInput={(e) => setFilename((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="field">
            <span>Expected sha256 (optional; a file that differs is deleted)</span>
            <input
              type="text"
              name="sha256"
              spellcheck={false}
              aria-invalid={!shaOk}
              value={sha256}
              onInput={(e) => setSha256((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="field">
            <span>Access token (optional, for gated models; never shown again)</span>
            <input
              type="password"
              name="token"
              autocomplete="off"
              value={token}
              onInput={(e) => setToken((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="field">
            <span>Onto</span>
            <select
              name="workers"
              value={target}
              onChange={(e) => setTarget((e.target as HTMLSelectElement).value)}
            >
              <option value="all">every connected worker</option>
              {capable.map((w) => (
                <option key={w.id} value={w.id}>
                  {w.name} ({w.id})
                </option>
              ))}
            </select>
          </label>
          <label class="choice">
            <input
              type="checkbox"
              name="workshop"
              checked={keep}
              onChange={(e) => setKeep((e.target as HTMLInputElement).checked)}
            />
            <span>
              <b>Also on GPUs that join later</b>{' '}
              <span class="muted">(the workshop list: a new GPU fetches it before taking jobs)</span>
            </span>
          </label>
        </div>
        <p class="note">
          The disk space is checked first; an interrupted download resumes; the file appears in ComfyUI only
          once it is complete (and matches the sha256).
        </p>
      </form>
    </Dialog>
  );
}

function DownloadRow({ ctx, d }: { ctx: Ctx; d: ModelDownloadView }) {
  const active = ACTIVE.has(d.state);
  const left =
    d.bytesPerSecond && d.total !== null && d.bytesPerSecond > 0
      ? (d.total - d.received) / d.bytesPerSecond
      : null;
  const cancel = () =>
    ctx.confirm({
      title: `Cancel the download of ${d.filename} on ${d.workerName}?`,
      body: <p>The partial file is deleted; nothing appears in ComfyUI.</p>,
      confirmLabel: 'Cancel the download',
      danger: true,
      run: async () => {
        await action(`/models/downloads/${encodeURIComponent(d.id)}/cancel`);
        return `Cancelling ${d.filename} on ${d.workerName}.`;
      },
    });
  return (
    <li class={`download download-${d.state}`} data-download={d.id}>
      <div class="held-line">
        <span class={`tag ${d.state === 'failed' ? 'tag-fail' : active ? 'tag-run' : ''}`}>
          {STATE_TEXT[d.state]}
        </span>{' '}
        <b>
          {d.folder}/{d.filename}
        </b>
        <span class="muted"> · {d.workerName}</span>
        <span class="spacer" />
        {active && !d.cancelRequested ? (
          <button type="button" class="btn btn-small btn-danger" onClick={cancel}>
            Cancel
          </button>
        ) : null}
      </div>
      {active ? (
        <>
          <Progress value={d.received} max={d.total ?? 0} label={`${d.filename} on ${d.workerName}`} />
          <p class="muted">
            {bytes(d.received)} of {bytes(d.total)}
            {d.bytesPerSecond ? ` · ${bytes(d.bytesPerSecond)}/s` : ''}
            {left !== null ? ` · about ${duration(left)} left` : ''}
            {d.cancelRequested ? ' · cancelling…' : ''}
          </p>
        </>
      ) : (
        <p class="muted" title={fullTime(d.finishedAt)}>
          {d.state === 'done'
            ? d.existing
              ? 'already there'
              : `${bytes(d.received)}${d.sha256 ? ` · sha256 ${d.sha256.slice(0, 12)}…` : ''}`
            : d.state === 'failed'
              ? (d.error?.message ?? 'failed')
              : 'cancelled'}{' '}
          · {clock(d.finishedAt)} · {d.url}
        </p>
      )}
    </li>
  );
}

function WorkshopList({ ctx, models }: { ctx: Ctx; models: WorkshopModelView[] }) {
  const remove = (m: WorkshopModelView) =>
    ctx.confirm({
      title: `Take ${m.folder}/${m.filename} off the workshop list?`,
      body: <p>GPUs that join later no longer fetch it. Files already on GPUs stay.</p>,
      confirmLabel: 'Take it off',
      run: async () => {
        await action('/models/workshop/remove', { folder: m.folder, filename: m.filename });
        return `${m.folder}/${m.filename} is off the workshop list.`;
      },
    });
  return (
    <div class="workshop-models">
      <h3 class="small">Workshop list: GPUs that join fetch these before taking jobs</h3>
      <ul class="downloads">
        {models.map((m) => (
          <li key={`${m.folder}/${m.filename}`} class="held-line">
            <b>
              {m.folder}/{m.filename}
            </b>
            <span class="muted small" title={m.url}>
              {m.sha256 ? ` · sha256 ${m.sha256.slice(0, 12)}…` : ''}
              {m.withToken ? ' · with token' : ''}
            </span>
            <span class="spacer" />
            <button type="button" class="btn btn-small" onClick={() => remove(m)}>
              Remove
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

/** Model files being downloaded onto workers (live), and the "Add a model" dialog. */
export function ModelsSection({ ctx }: { ctx: Ctx }) {
  const [adding, setAdding] = useState(false);
  const downloads = ctx.s.downloads ?? [];
  const active = downloads.filter((d) => ACTIVE.has(d.state)).length;
  return (
    <Section
      id="models"
      title="Models"
      count={active > 0 ? `${active} downloading` : undefined}
      actions={
        <button type="button" class="btn btn-small" onClick={() => setAdding(true)}>
          Add a model
        </button>
      }
    >
      {downloads.length === 0 && (ctx.s.workshopModels ?? []).length === 0 ? (
        <Empty title="No model downloads yet">
          Add a model by URL and every worker started with <code>--models-dir</code> downloads it into
          ComfyUI's models folder.
        </Empty>
      ) : (
        <ul class="downloads">
          {downloads.slice(0, 40).map((d) => (
            <DownloadRow key={d.id} ctx={ctx} d={d} />
          ))}
        </ul>
      )}
      {(ctx.s.workshopModels ?? []).length > 0 ? (
        <WorkshopList ctx={ctx} models={ctx.s.workshopModels} />
      ) : null}
      {adding ? <AddModelDialog ctx={ctx} onClose={() => setAdding(false)} /> : null}
    </Section>
  );
}
