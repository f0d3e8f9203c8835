/** The tests' video clip, and whether this machine can make video previews. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** 4 s, 160×120, keyframe every second, moov at the end; see test/fixtures/video/README.md. */
export const SEEK_CLIP = readFileSync(new URL('../fixtures/video/seek-4s.mp4', import.meta.url));

/** ffmpeg and ffprobe are on PATH: poster frames and video previews need both, else tests skip. */
export const HAS_FFMPEG = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v ffprobe && command -v ffmpeg'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
