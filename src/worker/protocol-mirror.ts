/**
 * Worker protocol, part two: how an agent hands the control plane a copy of ComfyUI's web frontend
 * or template library, over HTTP rather than the socket (see protocol.ts, which re-exports this).
 * Separate because it shares nothing with the socket messages: only the frontend and template
 * mirror code (src/frontend, src/templates, the agent's frontend-*.ts) uses it.
 */
import { z } from 'zod';

// ---- frontend mirror (HTTP, not the socket) ----------------------------------------------------
//
// 1. `POST /worker/v1/frontend/offers` with a {@link FrontendOffer}: every file of the frontend as
//    its site path, size and sha256. The answer ({@link FrontendOfferAnswer}) names the contents the
//    control plane lacks (files it already holds from an earlier version are never sent again).
// 2. `PUT /worker/v1/frontend/blobs/<sha256>` for each missing content, streamed; the control plane
//    checks the hash and refuses contents no pending offer names.
// 3. `POST /worker/v1/frontend/offers/<versionId>/complete`: the version is assembled and served.

/** Bounds on one offered frontend (the stock ComfyUI frontend is ~1,500 files, ~60 MB). */
export const FRONTEND_LIMITS = {
  maxFiles: 20_000,
  maxFileBytes: 256 * 1024 * 1024,
  maxTotalBytes: 1024 * 1024 * 1024,
} as const;

/**
 * A file's path on the site ComfyUI serves, relative to its root: `index.html`, `assets/x.js`,
 * `extensions/<custom node>/y.js`. No `..`, `.` or empty segments, no leading `/`, no backslash,
 * no control characters, no dot-files.
 */
export const frontendPathSchema = z
  .string()
  .min(1)
  .max(1024)
  .refine(
    (p) =>
      // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
      !/[\\\u0000-\u001f\u007f]/.test(p) &&
      p.split('/').every((seg) => seg !== '' && !seg.startsWith('.') && seg.length <= 255),
    'frontend paths are relative, with no empty, "." or ".." segments, dot-files, backslashes or control characters',
  );

export const frontendFileSchema = z.strictObject({
  path: frontendPathSchema,
  size: z.number().int().min(0).max(FRONTEND_LIMITS.maxFileBytes),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type FrontendFile = z.infer<typeof frontendFileSchema>;

/**
 * An offer of a set of files the control plane may mirror (the frontend, or the template library):
 * `index` must be among them, each path once, all within the limits.
 */
function offerSchema(index: string, what: string) {
  return z.strictObject({
    /** How the agent read it: over HTTP from ComfyUI, or from a folder (`--frontend-dir`). */
    source: z.enum(['http', 'dir']),
    comfyuiVersion: z.string().max(64),
    /** The frontend's own version when the agent could tell (e.g. `1.45.2`), else null. */
    frontendVersion: z.string().max(64).nullable(),
    files: z
      .array(frontendFileSchema)
      .min(1)
      .max(FRONTEND_LIMITS.maxFiles)
      .refine((fs) => fs.some((f) => f.path === index), `${what} needs an ${index}`)
      .refine((fs) => new Set(fs.map((f) => f.path)).size === fs.length, 'each path may appear once')
      .refine(
        (fs) => fs.reduce((n, f) => n + f.size, 0) <= FRONTEND_LIMITS.maxTotalBytes,
        `${what} may hold at most ${FRONTEND_LIMITS.maxTotalBytes} bytes`,
      ),
  });
}

export const frontendOfferSchema = offerSchema('index.html', 'a frontend');
export type FrontendOffer = z.infer<typeof frontendOfferSchema>;

/**
 * ComfyUI's template library (the files ComfyUI serves under `/templates/`, paths relative to it:
 * `index.json`, `<name>.json`, `<name>-1.webp`, ...), offered like the frontend with `source:
 * 'http'` and `frontendVersion` = the package version (system_stats' `installed_templates_version`).
 */
export const templateLibraryOfferSchema = offerSchema('index.json', 'a template library');

export const frontendOfferAnswer = z.object({
  /** Names this set of files (a hash of the paths and contents). */
  versionId: z.string().regex(/^[0-9a-f]{16}$/),
  /** `present`: served already, nothing to send; `pending`: send `missing`, then complete. */
  status: z.enum(['present', 'pending']),
  /** sha256 of each content to PUT; empty when present. */
  missing: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
});
export type FrontendOfferAnswer = z.infer<typeof frontendOfferAnswer>;
