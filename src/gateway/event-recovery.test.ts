/**
 * A job taken over from a process that died completes: the owner gets again only what is neither
 * in their durable event log nor relayed since — each output as `/history` shows it.
 */
import { describe, expect, it } from 'vitest';
import { MemoryEventLog, type EventRelay } from '../cluster/events.js';
import type { Job } from '../store/types.js';
import { recoverMissedEvents } from './event-recovery.js';

const job = {
  id: 'job-1',
  user: 'alice',
  startedAt: 1000,
  finishedAt: 2000,
  outputs: [
    { nodeId: '9', filename: 'a_00001_.png', subfolder: '', type: 'output', kind: 'images' },
    {
      nodeId: '12',
      filename: 'v_00001_.mp4',
      subfolder: 'clips',
      type: 'output',
      kind: 'gifs',
      extra: { format: 'video/h264-mp4' },
    },
    { nodeId: '12', filename: '', subfolder: '', type: 'output', kind: 'animated', value: true },
  ],
} as unknown as Job;

describe('recoverMissedEvents', () => {
  it('makes again only the executed/execution_start events that were neither logged nor relayed since', async () => {
    const log = new MemoryEventLog();
    const e = (jobId: string, type: string, data: Record<string, unknown>) =>
      log.append('alice', { from: 'p1', jobId, workerId: 'w', event: { type, data } });
    await e('job-1', 'execution_start', { prompt_id: 'x' });
    await e('job-0', 'executed', { node: '12', output: {} });
    const asked: string[][] = [];
    const relay = { log, requestRecover: (users: string[]) => asked.push(users) } as unknown as EventRelay;
    const recover = recoverMissedEvents(relay);
    const got = await recover(job, 'tok:gpu', new Set(['executed:9']));
    expect(got).toEqual([
      {
        kind: 'event',
        jobId: 'job-1',
        user: 'alice',
        workerId: 'tok:gpu',
        event: {
          type: 'executed',
          data: {
            node: '12',
            display_node: '12',
            output: {
              gifs: [
                { filename: 'v_00001_.mp4', subfolder: 'clips', type: 'output', format: 'video/h264-mp4' },
              ],
              animated: [true],
            },
            prompt_id: 'job-1',
          },
        },
      },
    ]);
    // Every process is asked to read back what the owner's sockets there missed.
    expect(asked).toEqual([['alice']]);
    // Nothing logged at all: the start and every output node (and, for a finish reported again
    // after its ack was lost, ComfyUI's ending).
    const all = await recover({ ...job, user: 'bob', status: 'completed' } as Job, 'tok:gpu', new Set(), {
      ending: true,
    });
    expect(all.map((m) => [m.event.type, (m.event.data as { node?: string }).node])).toEqual([
      ['execution_start', undefined],
      ['executed', '9'],
      ['executed', '12'],
      ['execution_success', undefined],
      ['executing', null],
    ]);
  });
});
