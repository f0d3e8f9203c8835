import type { FastifyInstance, FastifyReply } from 'fastify';
import { both, emptyOk, userOf } from './http-util.js';
import type { GatewayDeps } from './deps.js';
import {
  EMPTY_SYSTEM_STATS,
  participantSystemStats,
  NO_ENV_HINT,
  currentEnv,
  objectInfoForUser,
  serverFeatures,
  topLevelFiles,
} from './environment.js';
import { WORKSHOP_EXTENSION_PATH } from './workshop-extension.js';
import type { ObjectInfo } from '../comfy/protocol.js';
import { loraLibraryOf } from '../loras/lora-library.js';
import { lorasListFor, objectInfoWithOwnLoras } from '../loras/own-loras.js';

const HINT_HEADER = 'x-comfy-multi-hint';
/** Model folders the frontend's model library leaves out (ComfyUI's own blacklist). */
const FOLDER_BLACKLIST = new Set(['configs', 'custom_nodes']);

function hint(reply: FastifyReply): void {
  reply.header(HINT_HEADER, NO_ENV_HINT);
}

/**
 * The environment answers (`object_info`, `system_stats`, `embeddings`, `models`, `extensions`,
 * ...) from the snapshot the workers upload, so the UI keeps working with no GPU online. Before the
 * first snapshot they are empty but valid, with an `X-Comfy-Multi-Hint` header saying why.
 */
export function envRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const { store, files } = deps;
  const loras = loraLibraryOf(deps);
  /** object_info as this participant sees it: their own uploads and their own LoRAs. */
  const forUser = async (user: string, objectInfo: Record<string, unknown>) => {
    const [inputs, own] = await Promise.all([topLevelFiles(files, user, 'input'), loras.names(user)]);
    return objectInfoWithOwnLoras(
      objectInfoForUser(
        objectInfo,
        inputs.map((f) => f.name),
      ) as ObjectInfo,
      own,
    );
  };
  /** A model folder's files as this participant sees them (`loras` gains their own). */
  const folderFor = async (user: string, folder: string, shared: readonly string[]) =>
    folder === 'loras' ? lorasListFor(shared, await loras.names(user)) : shared;

  both(app, 'GET', '/object_info', async (request, reply) => {
    const env = await currentEnv(store);
    if (!env) {
      hint(reply);
      return {};
    }
    return forUser(userOf(request), env.objectInfo);
  });

  both(app, 'GET', '/object_info/:nodeClass', async (request, reply) => {
    const { nodeClass } = request.params as { nodeClass: string };
    const env = await currentEnv(store);
    if (!env) {
      hint(reply);
      return {};
    }
    if (!Object.hasOwn(env.objectInfo, nodeClass)) return {};
    // The whole list, so a custom node offering the loras folder is recognised as in object_info.
    const patched = await forUser(userOf(request), env.objectInfo);
    return { [nodeClass]: patched[nodeClass] };
  });

  both(app, 'GET', '/system_stats', async (_request, reply) => {
    const env = await currentEnv(store);
    if (!env) {
      hint(reply);
      return EMPTY_SYSTEM_STATS;
    }
    return participantSystemStats(env.systemStats);
  });

  both(app, 'GET', '/embeddings', async (_request, reply) => {
    const env = await currentEnv(store);
    if (!env) hint(reply);
    return env?.embeddings ?? [];
  });

  both(app, 'GET', '/models', async (_request, reply) => {
    const env = await currentEnv(store);
    if (!env) hint(reply);
    return Object.keys(env?.models ?? {});
  });

  both(app, 'GET', '/models/:folder', async (request, reply) => {
    const { folder } = request.params as { folder: string };
    const env = await currentEnv(store);
    if (!env || !Object.hasOwn(env.models, folder))
      return reply.status(404).type('application/octet-stream').send('');
    return folderFor(userOf(request), folder, env.models[folder] ?? []);
  });

  both(app, 'GET', '/experiment/models', async (_request, reply) => {
    const env = await currentEnv(store);
    if (!env) hint(reply);
    // `folders` are the worker's absolute paths in ComfyUI; a participant has no use for them.
    return Object.keys(env?.models ?? {})
      .filter((f) => !FOLDER_BLACKLIST.has(f))
      .map((name) => ({ name, folders: [] as string[] }));
  });

  both(app, 'GET', '/experiment/models/:folder', async (request, reply) => {
    const { folder } = request.params as { folder: string };
    const env = await currentEnv(store);
    if (!env || !Object.hasOwn(env.models, folder))
      return reply.status(404).type('application/octet-stream').send('');
    const names = await folderFor(userOf(request), folder, env.models[folder] ?? []);
    return names.map((name) => ({ name, pathIndex: 0 }));
  });

  both(app, 'GET', '/extensions', async (_request, reply) => {
    const env = await currentEnv(store);
    if (!env) hint(reply);
    const list = (env?.extensions ?? []).filter((e) => e !== WORKSHOP_EXTENSION_PATH);
    return [...list, WORKSHOP_EXTENSION_PATH];
  });

  // Custom nodes' translations: the snapshot does not carry them, and ComfyUI answers {} without.
  both(app, 'GET', '/i18n', async () => ({}));

  both(app, 'GET', '/features', async () => serverFeatures(deps.config.UPLOAD_LIMIT));

  // Blueprint subgraphs and node replacements come from custom nodes; none are known here.
  both(app, 'GET', '/global_subgraphs', async () => ({}));
  both(app, 'GET', '/global_subgraphs/:id', async (_request, reply) =>
    reply.status(404).type('application/octet-stream').send(''),
  );
  both(app, 'GET', '/node_replacements', async () => ({}));

  // Model metadata needs the worker's files; answer as ComfyUI does for an unknown file.
  both(app, 'GET', '/view_metadata/:folder', async (_request, reply) =>
    reply.status(404).type('application/octet-stream').send(''),
  );

  // A participant must not unload models on a shared GPU: accepted and ignored.
  both(app, 'POST', '/free', async (_request, reply) => emptyOk(reply));

  // The frontend's log console (`/internal/logs*`): the workers' logs are not the participant's.
  for (const prefix of ['/internal', '/api/internal']) {
    app.get(`${prefix}/logs`, async (_request, reply) =>
      reply.type('application/json; charset=utf-8').send(JSON.stringify('')),
    );
    app.get(`${prefix}/logs/raw`, async () => ({ entries: [], size: { cols: 80, rows: 24 } }));
    app.patch(`${prefix}/logs/subscribe`, async (_request, reply) => emptyOk(reply));
    app.get(`${prefix}/folder_paths`, async () => ({}));
  }
}
