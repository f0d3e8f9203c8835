/** Errors of {@link ComfyClient} (`comfy-client.ts`), one class per way a call can fail. */
import type { ComfyPromptErrorBody } from './protocol.js';

export class ComfyError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ComfyError';
  }
}

/** ComfyUI could not be reached (connection refused, reset, DNS, ...). */
export class ComfyUnavailableError extends ComfyError {
  constructor(
    readonly method: string,
    readonly path: string,
    cause: unknown,
  ) {
    super(`ComfyUI unreachable (${method} ${path}): ${(cause as Error)?.message ?? String(cause)}`, {
      cause,
    });
    this.name = 'ComfyUnavailableError';
  }
}

/** No answer (or no next chunk of a download) within the time allowed. */
export class ComfyTimeoutError extends ComfyError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly timeoutMs: number,
  ) {
    super(`ComfyUI did not answer ${method} ${path} within ${timeoutMs} ms`);
    this.name = 'ComfyTimeoutError';
  }
}

/** ComfyUI answered with an unexpected HTTP status. `bodyText` holds the start of its body. */
export class ComfyHttpError extends ComfyError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly bodyText: string,
    message?: string,
  ) {
    super(
      message ??
        `ComfyUI answered ${method} ${path} with HTTP ${status}${bodyText ? `: ${bodyText.slice(0, 200)}` : ''}`,
    );
    this.name = 'ComfyHttpError';
  }
}

/** `POST /prompt` answered 400: the prompt failed ComfyUI's validation. `body` is ComfyUI's. */
export class ComfyPromptError extends ComfyHttpError {
  constructor(
    path: string,
    readonly body: ComfyPromptErrorBody,
    bodyText: string,
  ) {
    const { message, details } = body.error;
    super(
      'POST',
      path,
      400,
      bodyText,
      `ComfyUI rejected the prompt: ${message}${details ? `: ${details}` : ''}`,
    );
    this.name = 'ComfyPromptError';
  }
}

/** ComfyUI answered 2xx with a body that does not match its API. */
export class ComfyProtocolError extends ComfyError {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly problem: string,
  ) {
    super(`Unexpected answer to ${method} ${path}: ${problem}`);
    this.name = 'ComfyProtocolError';
  }
}
