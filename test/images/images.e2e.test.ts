/**
 * The container images build and run: wraps scripts/image-test.sh, which debootstraps a Debian base
 * (cached in ~/.cache/comfy-multi), imports it with Node 24 into buildah under the base image names
 * the Dockerfiles use, builds ./Dockerfile and deploy/gpu/Dockerfile unchanged with
 * `buildah bud --isolation chroot`, starts them with `buildah run`, checks /health and the
 * HEALTHCHECK, runs a job through a worker agent + ComfyUI stand-in against the control plane
 * image and another through the GPU image's supervisor, and checks a graceful SIGTERM stop.
 *
 * Needs root, buildah and debootstrap (.ci/run installs them), Debian's mirror and the npm registry.
 * Elsewhere it is skipped, saying why. IMAGE_TEST=0 skips it on purpose.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const onPath = (cmd: string) =>
  (process.env.PATH ?? '').split(':').some((d) => d && existsSync(resolve(d, cmd)));

function whySkip(): string | null {
  if (process.env.IMAGE_TEST === '0') return 'IMAGE_TEST=0';
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs linux-x64';
  if (process.getuid?.() !== 0) return 'needs root (debootstrap and chroot builds)';
  for (const cmd of ['buildah', 'debootstrap'])
    if (!onPath(cmd)) return `needs ${cmd} (apt-get install ${cmd}; .ci/run installs it)`;
  return null;
}
const skip = whySkip();

describe.skipIf(skip !== null)(`container images${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it(
    'build with buildah and run: /health, a job through a worker, graceful stop',
    async () => {
      const output: string[] = [];
      const code = await new Promise<number | null>((done) => {
        const child = spawn('scripts/image-test.sh', ['all'], {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const keep = (chunk: Buffer) => {
          output.push(chunk.toString('utf8'));
          if (output.length > 4000) output.splice(0, output.length - 4000);
        };
        child.stdout.on('data', keep);
        child.stderr.on('data', keep);
        child.once('exit', (c) => done(c));
      });
      const text = output.join('');
      // The figures (debootstrap, build times, sizes, time to /health) are the script's last lines.
      const figures = text.slice(text.lastIndexOf('figures:'));
      if (code === 0) console.log(`image-test ${figures}`);
      expect(code, text.split('\n').slice(-120).join('\n')).toBe(0);
    },
    45 * 60_000,
  );
});
