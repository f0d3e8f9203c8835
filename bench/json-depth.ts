/**
 * The cost of the JSON nesting check every body passes before JSON.parse (src/http/json-depth.ts),
 * on a ~5 MB prompt-like body: the median of 7 runs of each, and their ratio.
 */
import { performance } from 'node:perf_hooks';
import { assertJsonDepth } from '../src/http/json-depth.js';
import { median } from './stats.js';

export function benchJsonDepth(): Record<string, number> {
  const node = {
    class_type: 'KSampler',
    inputs: { seed: 1, steps: 20, text: 'a "quoted" [string] {with} brackets', model: ['4', 0] },
  };
  const prompt: Record<string, unknown> = {};
  for (let i = 0; i < 40_000; i++) prompt[String(i)] = node;
  const text = JSON.stringify({ prompt });
  const scan: number[] = [];
  const parse: number[] = [];
  for (let r = 0; r < 7; r++) {
    let t = performance.now();
    assertJsonDepth(text);
    scan.push(performance.now() - t);
    t = performance.now();
    JSON.parse(text);
    parse.push(performance.now() - t);
  }
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    body_mb: round(text.length / 1024 / 1024),
    depth_check_ms: round(median(scan)),
    json_parse_ms: round(median(parse)),
    check_to_parse_ratio: round(median(scan) / median(parse)),
  };
}
