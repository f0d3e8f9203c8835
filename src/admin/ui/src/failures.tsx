import type { Ctx } from './ctx.js';
import { clock, fullTime } from './format.js';
import { Empty, Section } from './section.js';

const REASON_TEXT: Record<string, string> = {
  execution_error: 'ComfyUI error',
  worker_lost: 'GPU lost on every attempt',
  interrupted: 'interrupted',
  invalid_prompt: 'invalid prompt',
  upload_failed: 'upload failed',
};

export function FailuresSection({ ctx }: { ctx: Ctx }) {
  const list = ctx.s.failures;
  return (
    <Section id="failures" title="Recent failures" count={ctx.s.queue.counts.failed}>
      {list.length === 0 ? (
        <Empty title="No failed jobs">
          <p>When a job fails, ComfyUI’s error message and the node it failed in show up here.</p>
        </Empty>
      ) : (
        <ul class="failures">
          {list.map((f) => (
            <li key={f.id} class="failure">
              <div class="failure-head">
                <time
                  class="muted"
                  dateTime={f.finishedAt ? new Date(f.finishedAt).toISOString() : undefined}
                  title={fullTime(f.finishedAt)}
                >
                  {clock(f.finishedAt)}
                </time>
                <b>{f.user}</b>
                <span class="muted">
                  {f.workflow ?? 'unnamed workflow'} · #{f.number}
                </span>
                <span class="tag tag-bad">{REASON_TEXT[f.reason] ?? f.reason}</span>
              </div>
              {f.nodeType || f.nodeId ? (
                <div class="failure-node">
                  in node <b>{f.nodeType ?? 'node'}</b>
                  {f.nodeId ? <span class="muted"> #{f.nodeId}</span> : null}
                </div>
              ) : null}
              <pre class="failure-msg">
                {f.exceptionType ? `${f.exceptionType}: ` : ''}
                {f.message}
              </pre>
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}
