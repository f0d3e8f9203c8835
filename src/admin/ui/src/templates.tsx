import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, v1 } from './api.js';
import type { Ctx } from './ctx.js';
import { clock } from './format.js';
import { Empty, Section } from './section.js';

/** A workshop template as `GET /api/v1/templates` lists it. */
interface TemplateRow {
  id: string;
  title: string;
  description: string;
  fileName: string;
  size: number;
  thumbnail: { type: string; size: number } | null;
  updatedAt: number;
  by: string;
  default: boolean;
}

interface Listing {
  templates: TemplateRow[];
  defaultId: string | null;
  library: { label: string; files: number; bytes: number; workerId: string; at: number } | null;
  libraryMirrored: boolean;
}

/** `GET /api/v1/templates/models`: per template, per known worker, the files it needs and lacks. */
interface ModelsAnswer {
  templates: {
    name: string;
    id?: string;
    error?: string;
    workers: {
      id: string;
      name: string;
      connected: boolean;
      needed?: string[];
      missing?: string[];
      error?: string;
    }[];
  }[];
}

const readText = (f: File) => f.text();
const readDataUrl = (f: File) =>
  new Promise<string>((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(new Error('The picture could not be read.'));
    r.readAsDataURL(f);
  });

const messageOf = (err: unknown) =>
  err instanceof ApiError || err instanceof Error ? err.message : String(err);

/**
 * The workshop's templates: upload (a workflow saved from ComfyUI, checked by the server's
 * converter), replace, reorder, remove, mark the default workflow, send to everyone; which
 * ComfyUI template library participants get; and which worker has which model file per template.
 */
export function TemplatesSection({ ctx }: { ctx: Ctx }) {
  const [list, setList] = useState<Listing | null>(null);
  const [models, setModels] = useState<ModelsAnswer | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [uploadError, setUploadError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [formKey, setFormKey] = useState(0);

  const refresh = useCallback(async () => {
    try {
      const [l, m] = await Promise.all([
        v1<Listing>('GET', '/templates'),
        v1<ModelsAnswer>('GET', '/templates/models'),
      ]);
      setList(l);
      setModels(m);
      setLoadError(null);
    } catch (err) {
      setLoadError(messageOf(err));
    }
  }, []);
  useEffect(() => {
    void refresh();
  }, [refresh]);

  const run = async (what: () => Promise<string>) => {
    setBusy(true);
    try {
      ctx.notify(await what());
    } catch (err) {
      ctx.notify(messageOf(err), 'error');
    } finally {
      setBusy(false);
      await refresh();
    }
  };

  const upload = async (ev: Event) => {
    ev.preventDefault();
    const form = ev.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    const file = data.get('workflow') as File | null;
    const picture = data.get('thumbnail') as File | null;
    setUploadError(null);
    if (!file || file.size === 0) {
      setUploadError('Choose the workflow file (.json) saved from ComfyUI.');
      return;
    }
    const title = String(data.get('title') ?? '').trim() || file.name.replace(/\.json$/i, '');
    setBusy(true);
    try {
      const added = await v1<TemplateRow>('POST', '/templates', {
        title,
        description: String(data.get('description') ?? ''),
        workflow: await readText(file),
        ...(picture && picture.size > 0 ? { thumbnail: await readDataUrl(picture) } : {}),
        ...(data.get('default') ? { default: true } : {}),
      });
      ctx.notify(`Added “${added.title}”.`);
      setFormKey((k) => k + 1);
    } catch (err) {
      setUploadError(messageOf(err));
    } finally {
      setBusy(false);
      await refresh();
    }
  };

  const templates = list?.templates ?? [];
  const move = (i: number, by: -1 | 1) => {
    const ids = templates.map((t) => t.id);
    const j = i + by;
    if (j < 0 || j >= ids.length) return;
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
    void run(async () => {
      await v1('PUT', '/templates/order', { ids });
      return 'Order saved.';
    });
  };
  const replace = (t: TemplateRow) => {
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = '.json,application/json';
    input.onchange = () => {
      const f = input.files?.[0];
      if (!f) return;
      void run(async () => {
        await v1('PUT', `/templates/${t.id}`, { workflow: await readText(f) });
        return `Replaced the workflow of “${t.title}”.`;
      });
    };
    input.click();
  };
  const toggleDefault = (t: TemplateRow) =>
    run(async () => {
      await v1('PUT', '/templates/default', { id: t.default ? null : t.id });
      return t.default ? 'No default workflow now.' : `“${t.title}” opens on each participant’s first login.`;
    });
  const send = (t: TemplateRow) =>
    ctx.confirm({
      title: `Send “${t.title}” to everyone?`,
      body: (
        <p>
          It is saved as <code>{t.fileName}</code> in every participant’s workflow list. Anyone who already
          has a file of that name keeps theirs.
        </p>
      ),
      confirmLabel: 'Send to everyone',
      run: async () => {
        const r = await v1<{ written: string[]; kept: string[] }>('POST', `/templates/${t.id}/send`, {});
        return `Sent to ${r.written.length} participant(s)${r.kept.length ? `; ${r.kept.length} kept their own copy` : ''}.`;
      },
    });
  const remove = (t: TemplateRow) =>
    ctx.confirm({
      title: `Remove “${t.title}”?`,
      body: <p>It leaves the Templates dialog. Copies participants already saved stay theirs.</p>,
      confirmLabel: 'Remove',
      danger: true,
      run: async () => {
        await v1('DELETE', `/templates/${t.id}`);
        await refresh();
        return `Removed “${t.title}”.`;
      },
    });

  const lib = list?.library;
  return (
    <Section
      id="templates"
      title="Workshop templates"
      count={list ? templates.length : undefined}
      actions={
        <button type="button" class="btn btn-small" onClick={() => void refresh()} disabled={busy}>
          Refresh
        </button>
      }
    >
      {loadError ? (
        <p class="note bad" role="alert">
          {loadError}
        </p>
      ) : null}
      {list && templates.length === 0 ? (
        <Empty title="No workshop templates yet">
          <p>
            Upload a workflow saved from ComfyUI (Workflow → Save). Participants see it first in their
            Templates dialog, under “Workshop”.
          </p>
        </Empty>
      ) : null}
      {templates.length > 0 ? (
        <ol class="templates" aria-label="Workshop templates in the order participants see them">
          {templates.map((t, i) => (
            <li key={t.id} class="template" data-id={t.id}>
              {t.thumbnail ? (
                <img
                  class="template-thumb"
                  src={`/api/v1/templates/${t.id}/thumbnail?v=${t.updatedAt}`}
                  alt=""
                />
              ) : (
                <div class="template-thumb template-thumb-none" aria-hidden="true">
                  {t.title.slice(0, 1)}
                </div>
              )}
              <div class="template-text">
                <b class="template-title">{t.title}</b>
                {t.default ? <span class="tag tag-front">default</span> : null}
                <div class="small muted">{t.description || 'No description.'}</div>
                <div
                  class="small muted"
                  title="Add this to a participant's address to open the template directly"
                >
                  opens with <code>/&lt;user&gt;/?template={t.id}</code>
                </div>
                <div class="small muted">
                  {t.fileName} · {t.size < 1024 ? `${t.size} bytes` : `${Math.round(t.size / 1024)} KB`} ·{' '}
                  {t.by} at {clock(t.updatedAt)}
                </div>
              </div>
              <div class="template-actions">
                <button
                  type="button"
                  class="btn btn-small"
                  aria-label={`Move ${t.title} up`}
                  disabled={busy || i === 0}
                  onClick={() => move(i, -1)}
                >
                  ↑
                </button>
                <button
                  type="button"
                  class="btn btn-small"
                  aria-label={`Move ${t.title} down`}
                  disabled={busy || i === templates.length - 1}
                  onClick={() => move(i, 1)}
                >
                  ↓
                </button>
                <button type="button" class="btn btn-small" disabled={busy} onClick={() => replace(t)}>
                  Replace…
                </button>
                <button
                  type="button"
                  class="btn btn-small"
                  disabled={busy}
                  onClick={() => void toggleDefault(t)}
                >
                  {t.default ? 'Unset default' : 'Make default'}
                </button>
                <button type="button" class="btn btn-small" disabled={busy} onClick={() => send(t)}>
                  Send to everyone…
                </button>
                <button
                  type="button"
                  class="btn btn-small btn-danger-ghost"
                  disabled={busy}
                  onClick={() => remove(t)}
                >
                  Remove
                </button>
              </div>
            </li>
          ))}
        </ol>
      ) : null}

      <form
        key={formKey}
        class="template-upload"
        onSubmit={(e) => void upload(e)}
        aria-label="Upload a template"
      >
        <h3 class="sub-title">Upload a template</h3>
        <label class="field">
          Workflow file (.json, saved from ComfyUI)
          <input type="file" name="workflow" accept=".json,application/json" required />
        </label>
        <label class="field">
          Title
          <input type="text" name="title" maxLength={120} placeholder="the file name when empty" />
        </label>
        <label class="field">
          Description
          <textarea name="description" maxLength={2000} rows={2} />
        </label>
        <label class="field">
          Thumbnail (PNG, JPEG or WebP, optional)
          <input type="file" name="thumbnail" accept="image/png,image/jpeg,image/webp" />
        </label>
        <label class="template-check">
          <input type="checkbox" name="default" /> Open it on each participant’s first login
        </label>
        {uploadError ? (
          <p class="note bad" role="alert">
            {uploadError}
          </p>
        ) : null}
        <button type="submit" class="btn btn-primary" disabled={busy}>
          Upload
        </button>
      </form>

      <p class="small muted template-library">
        ComfyUI’s template library:{' '}
        {!list
          ? '…'
          : !list.libraryMirrored
            ? 'not mirrored (TEMPLATE_LIBRARY_MIRROR=false).'
            : lib
              ? `${lib.label}, ${lib.files} files, from ${lib.workerId} at ${clock(lib.at)}.`
              : 'none yet: it is copied from the first worker whose ComfyUI has the comfyui-workflow-templates package.'}
      </p>

      <TemplateModels models={models} />
    </Section>
  );
}

/** Per template, per worker: the model files it needs, and which that worker lacks. */
function TemplateModels({ models }: { models: ModelsAnswer | null }) {
  if (!models || models.templates.length === 0) return null;
  return (
    <div class="template-models">
      <h3 class="sub-title">Model files per template and worker</h3>
      {models.templates.map((t) => (
        <div key={t.id ?? t.name} class="template-models-one">
          <b>{t.name}</b>
          {t.error ? <span class="tag tag-bad">{t.error}</span> : null}
          {t.workers.length === 0 ? (
            <div class="small muted">
              No GPU worker is known yet: connect one to see which model files it has.
            </div>
          ) : (
            <table class="table small">
              <thead>
                <tr>
                  <th scope="col">Worker</th>
                  <th scope="col">Needs</th>
                  <th scope="col">Missing</th>
                </tr>
              </thead>
              <tbody>
                {t.workers.map((w) => (
                  <tr key={w.id}>
                    <td>
                      {w.name}
                      {w.connected ? '' : ' (offline)'}
                    </td>
                    <td>
                      {w.error ? (
                        <span class="muted">{w.error}</span>
                      ) : (
                        (w.needed ?? []).join(', ') || 'no model files'
                      )}
                    </td>
                    <td>
                      {w.missing && w.missing.length > 0 ? (
                        <span class="tag tag-bad">{w.missing.join(', ')}</span>
                      ) : w.error ? (
                        '—'
                      ) : (
                        <span class="tag tag-run">all present</span>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      ))}
    </div>
  );
}
