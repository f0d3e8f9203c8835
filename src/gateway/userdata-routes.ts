import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import { safeRelativePath } from '../files/safe-path.js';
import {
  both,
  closeAfterReply,
  isObject,
  jsonBody,
  meteredBody,
  pyUnquote,
  q,
  textReply,
  userOf,
} from './http-util.js';
import { contentTypeOf, isDangerousContentType } from './mime.js';
import type { UserdataEntry, UserSpace } from './user-space.js';

/** ComfyUI's `get_file_info`: times in epoch milliseconds (current ComfyUI). */
function fileInfo(e: UserdataEntry, relativeTo: string) {
  const path = relativeTo === '' ? e.path : e.path.slice(relativeTo.length + 1);
  return { path, size: e.size, modified: Math.floor(e.mtimeMs), created: Math.floor(e.ctimeMs) };
}

/** A `{file}` path parameter: ComfyUI unquotes it once more when it still holds a `%`. */
function paramPath(raw: unknown): string {
  if (typeof raw !== 'string' || raw === '') throw new AppError('BAD_REQUEST', 'A file path is required.');
  return safeRelativePath(raw.includes('%') ? pyUnquote(raw) : raw);
}

const bool = (v: string | undefined, dflt: boolean) => (v === undefined ? dflt : v.toLowerCase() === 'true');

/**
 * `users`, `settings` and `userdata` as ComfyUI's user manager answers them in single-user mode,
 * over the participant's own space (see {@link UserSpace}).
 */
export function userdataRoutes(
  app: FastifyInstance,
  space: UserSpace,
  limits: Pick<Config, 'SETTINGS_LIMIT' | 'USERDATA_LIMIT'>,
): void {
  const settingsBody = { bodyLimit: limits.SETTINGS_LIMIT };
  // ---- users: the single-user answer, so the frontend never shows its user picker ------------
  both(app, 'GET', '/users', async (request) => {
    await space.ensureSeeded(userOf(request));
    return { storage: 'server', migrated: true };
  });
  both(app, 'POST', '/users', async (_request, reply) => {
    // Single-user mode has no user creation; accounts are managed by the instructor.
    return reply.status(400).send({ error: 'Accounts are managed by the workshop instructor.' });
  });

  // ---- settings --------------------------------------------------------------------------------
  both(app, 'GET', '/settings', async (request) => {
    const user = userOf(request);
    await space.ensureSeeded(user);
    return space.getSettings(user);
  });
  both(app, 'GET', '/settings/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    const settings = await space.getSettings(userOf(request));
    return reply
      .type('application/json; charset=utf-8')
      .send(JSON.stringify(Object.hasOwn(settings, id) ? settings[id] : null));
  });
  both(
    app,
    'POST',
    '/settings',
    async (request, reply) => {
      const body = jsonBody(request);
      if (!isObject(body))
        throw new AppError('VALIDATION_FAILED', 'Settings must be a JSON object of id → value.');
      await space.updateSettings(userOf(request), (s) => ({ ...s, ...body }));
      return reply.status(200).type('application/octet-stream').send('');
    },
    settingsBody,
  );
  both(
    app,
    'POST',
    '/settings/:id',
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (!id) throw new AppError('BAD_REQUEST');
      const value = jsonBody(request);
      if (value === undefined) throw new AppError('INVALID_JSON');
      await space.updateSettings(userOf(request), (s) => ({ ...s, [id]: value }));
      return reply.status(200).type('application/octet-stream').send('');
    },
    settingsBody,
  );

  // ---- userdata listing ------------------------------------------------------------------------
  both(app, 'GET', '/userdata', async (request, reply) => {
    const dirRaw = q(request, 'dir') ?? '';
    if (!dirRaw) return textReply(reply, 400, 'Directory not provided');
    const dir = safeRelativePath(dirRaw);
    const entries = await space.listUnder(userOf(request), dir);
    if (!entries) return textReply(reply, 404, 'Directory not found');
    const recurse = bool(q(request, 'recurse'), false);
    const fullInfo = bool(q(request, 'full_info'), false);
    const split = bool(q(request, 'split'), false);
    const out: unknown[] = [];
    for (const e of entries) {
      const rel = dir === '' ? e.path : e.path.slice(dir.length + 1);
      if (!recurse && rel.includes('/')) continue;
      if (fullInfo) out.push(fileInfo(e, dir));
      else if (split) out.push([rel, ...rel.split('/')]);
      else out.push(rel);
    }
    return out;
  });

  both(app, 'GET', '/v2/userdata', async (request, reply) => {
    const user = userOf(request);
    const raw = q(request, 'path') ?? '';
    let path: string;
    try {
      path = safeRelativePath(pyUnquote(raw));
    } catch {
      return textReply(reply, 400, 'Invalid path requested');
    }
    const entries = await space.listUnder(user, path);
    if (!entries) {
      if (path === '') return [];
      const single = await space.stat(user, path);
      return single
        ? textReply(reply, 400, 'Requested path is not a directory')
        : textReply(reply, 404, 'Requested path not found');
    }
    const dirs = new Set<string>();
    const results: Record<string, unknown>[] = [];
    for (const e of entries) {
      const parts = e.path.split('/');
      for (let i = (path === '' ? 0 : path.split('/').length) + 1; i < parts.length; i++)
        dirs.add(parts.slice(0, i).join('/'));
      results.push({
        name: parts[parts.length - 1],
        path: e.path,
        type: 'file',
        size: e.size,
        modified: e.mtimeMs / 1000,
      });
    }
    for (const d of dirs) results.push({ name: d.split('/').pop(), path: d, type: 'directory' });
    results.sort((a, b) => {
      const da = a.type === 'directory' ? 0 : 1;
      const db = b.type === 'directory' ? 0 : 1;
      if (da !== db) return da - db;
      const na = String(a.name).toLowerCase();
      const nb = String(b.name).toLowerCase();
      return na < nb ? -1 : na > nb ? 1 : 0;
    });
    return results;
  });

  // ---- one file --------------------------------------------------------------------------------
  both(app, 'GET', '/userdata/:file', async (request, reply) => {
    const rel = paramPath((request.params as { file: string }).file);
    const found = await space.read(userOf(request), rel);
    if (!found) return reply.status(404).type('application/octet-stream').send('');
    let type = contentTypeOf(rel);
    const isUserCss = rel === 'user.css';
    if (isUserCss) type = 'text/css';
    else if (isDangerousContentType(type)) type = 'application/octet-stream';
    return reply
      .header('content-type', type)
      .header('x-content-type-options', 'nosniff')
      .header('content-disposition', isUserCss ? 'inline' : 'attachment')
      .header('content-length', String(found.entry.size))
      .send(found.body);
  });

  // Userdata files are streamed to the file store, never held in memory: in a scope of their own
  // whose parser leaves the body unread, metered against USERDATA_LIMIT while it is stored.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    both(scope, 'POST', '/userdata/:file', async (request: FastifyRequest, reply: FastifyReply) => {
      const user = userOf(request);
      const rel = paramPath((request.params as { file: string }).file);
      const overwrite = q(request, 'overwrite') !== 'false';
      const fullInfo = (q(request, 'full_info') ?? 'false').toLowerCase() === 'true';
      if (!overwrite && (await space.stat(user, rel))) return textReply(reply, 409, 'File already exists');
      let entry: UserdataEntry;
      try {
        entry = await space.write(user, rel, meteredBody(request, limits.USERDATA_LIMIT, 'USERDATA_LIMIT'));
      } catch (err) {
        closeAfterReply(reply);
        throw err;
      }
      return fullInfo
        ? fileInfo(entry, '')
        : reply.type('application/json; charset=utf-8').send(JSON.stringify(entry.path));
    });
  });

  both(app, 'DELETE', '/userdata/:file', async (request, reply) => {
    const rel = paramPath((request.params as { file: string }).file);
    const r = await space.delete(userOf(request), rel);
    if (r === 'missing') return reply.status(404).type('application/octet-stream').send('');
    if (r === 'template')
      return textReply(reply, 403, 'Shared workshop templates are read-only; save a copy to change one.');
    return reply.status(204).send();
  });

  both(app, 'POST', '/userdata/:file/move/:dest', async (request, reply) => {
    const user = userOf(request);
    const params = request.params as { file: string; dest: string };
    const from = paramPath(params.file);
    const dest = paramPath(params.dest);
    if (!(await space.stat(user, from))) return reply.status(404).type('application/octet-stream').send('');
    const overwrite = q(request, 'overwrite') !== 'false';
    const fullInfo = (q(request, 'full_info') ?? 'false').toLowerCase() === 'true';
    if (!overwrite && (await space.stat(user, dest))) return textReply(reply, 409, 'File already exists');
    const entry = await space.move(user, from, dest);
    return fullInfo
      ? fileInfo(entry, '')
      : reply.type('application/json; charset=utf-8').send(JSON.stringify(entry.path));
  });
}
