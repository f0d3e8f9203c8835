/**
 * UI→API workflow conversion (src/comfy/workflow-convert): the LTX-2 template (one subgraph, 37
 * inner nodes) with the recorded object_info, and a synthetic workflow of 2000 chained nodes, each
 * converted 30 times; the median and p99 of one conversion, and the model check of the result.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { missingModelsError } from '../src/comfy/model-requirements.js';
import type { ObjectInfo } from '../src/comfy/protocol.js';
import { convertWorkflow } from '../src/comfy/workflow-convert/index.js';
import { COMFY_FIXTURES, WORKFLOW_FIXTURES } from '../test/support/fixtures.js';
import { median, percentile } from './stats.js';

function time(run: () => void, n = 30): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    run();
    out.push(performance.now() - t);
  }
  return out;
}

/** A chain of ImageInvert nodes behind an EmptyImage, with a SaveImage at the end. */
function chain(n: number): unknown {
  const nodes: unknown[] = [
    {
      id: 1,
      type: 'EmptyImage',
      mode: 0,
      inputs: [],
      outputs: [{ name: 'IMAGE', type: 'IMAGE', links: [1] }],
      widgets_values: [64, 64, 1, 0],
    },
  ];
  const links: unknown[][] = [];
  for (let i = 2; i <= n; i++) {
    nodes.push({
      id: i,
      type: i === n ? 'SaveImage' : 'ImageInvert',
      mode: 0,
      inputs: [{ name: i === n ? 'images' : 'image', type: 'IMAGE', link: i - 1 }],
      outputs: i === n ? [] : [{ name: 'IMAGE', type: 'IMAGE', links: [i] }],
      ...(i === n ? { widgets_values: ['bench'] } : {}),
    });
    links.push([i - 1, i - 1, 0, i, 0, 'IMAGE']);
  }
  return { last_node_id: n, nodes, links, version: 0.4 };
}

export function benchConvert(): Record<string, number> {
  const objectInfo = {
    ...JSON.parse(readFileSync(`${COMFY_FIXTURES}/object_info.json`, 'utf8')),
    ...JSON.parse(
      readFileSync(
        new URL('../test/fixtures/workflow-convert/object_info-newer-nodes.json', import.meta.url),
        'utf8',
      ),
    ),
  } as ObjectInfo;
  const ltx = JSON.parse(readFileSync(`${WORKFLOW_FIXTURES}/ltx2_text_to_video.json`, 'utf8'));
  const big = chain(2000);
  const ltxTimes = time(() => convertWorkflow(ltx, objectInfo));
  const bigTimes = time(() => convertWorkflow(big, objectInfo));
  const converted = convertWorkflow(ltx, objectInfo);
  if (!converted.ok) throw new Error(converted.error.message);
  const holders = [{ models: { checkpoints: ['ltx-2-19b-dev-fp8.safetensors'] }, objectInfo }];
  const checkTimes = time(() => missingModelsError(converted.prompt, holders, { objectInfo }), 100);
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    ltx2_median_ms: round(median(ltxTimes)),
    ltx2_p99_ms: round(percentile(ltxTimes, 99)),
    chain2000_median_ms: round(median(bigTimes)),
    chain2000_p99_ms: round(percentile(bigTimes, 99)),
    ltx2_model_check_median_ms: round(median(checkTimes)),
  };
}
