/**
 * Where the recorded ComfyUI fixtures live: `$COMFY_FIXTURES_DIR`, else the `shared/` folder that
 * sits beside the checkout (as on developer machines and in CI).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const FIXTURES_ROOT: string =
  process.env.COMFY_FIXTURES_DIR ?? fileURLToPath(new URL('../../../shared/fixtures', import.meta.url));

export const COMFY_FIXTURES: string = `${FIXTURES_ROOT}/comfyui-v0.3.64`;
export const WORKFLOW_FIXTURES: string = `${FIXTURES_ROOT}/workflows`;

if (!existsSync(COMFY_FIXTURES)) {
  throw new Error(
    `ComfyUI fixtures not found at ${COMFY_FIXTURES}; set COMFY_FIXTURES_DIR to the folder holding comfyui-v0.3.64/`,
  );
}
