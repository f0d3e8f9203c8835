/**
 * Every error a client can see, in one table: code → HTTP status and a default message.
 * `docs/errors.md` documents each code; a test fails when one is missing there.
 */
export const ERROR_CODES = {
  BAD_REQUEST: { status: 400, message: 'The request is malformed.' },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  VALIDATION_FAILED: { status: 400, message: 'The request does not match the expected shape.' },
  INVALID_PROMPT: { status: 400, message: 'The prompt is not a valid ComfyUI API-format prompt.' },
  INVALID_WORKFLOW: { status: 400, message: 'The UI-format workflow cannot be converted to a prompt.' },
  INVALID_PATH: { status: 400, message: 'The path is not allowed.' },
  LORA_INVALID: {
    status: 400,
    message: 'The file is not a LoRA in .safetensors format (pickles such as .ckpt and .pt are refused).',
  },
  HASH_MISMATCH: { status: 400, message: 'The uploaded content does not match its sha256.' },
  UNAUTHORIZED: { status: 401, message: 'Authentication is required.' },
  INVALID_CREDENTIALS: { status: 401, message: 'The user name or password is wrong.' },
  INVALID_TOKEN: { status: 401, message: 'The token is not valid.' },
  SIGN_IN_LINK_INVALID: {
    status: 401,
    message:
      'This sign-in link is not valid (any more). Ask your instructor for a new login card, or sign in with your user name and password.',
  },
  FORBIDDEN: { status: 403, message: 'You are not allowed to do this.' },
  CSRF_FAILED: { status: 403, message: 'The request did not carry a valid CSRF token.' },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  JOB_NOT_FOUND: { status: 404, message: 'No such job.' },
  USER_NOT_FOUND: { status: 404, message: 'No such user.' },
  WORKER_NOT_FOUND: { status: 404, message: 'No such worker.' },
  FILE_NOT_FOUND: { status: 404, message: 'No such file.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'This method is not allowed here.' },
  CONFLICT: { status: 409, message: 'The request conflicts with the current state.' },
  JOB_FINISHED: { status: 409, message: 'The job has already finished.' },
  USER_EXISTS: { status: 409, message: 'A user with this name already exists.' },
  FRONTEND_NOT_WANTED: { status: 409, message: 'This control plane does not mirror the ComfyUI frontend.' },
  TEMPLATES_NOT_WANTED: {
    status: 409,
    message: "This control plane does not mirror ComfyUI's template library.",
  },
  FRONTEND_INCOMPLETE: { status: 409, message: 'Some files of the offered frontend have not arrived.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large.' },
  LORA_QUOTA_EXCEEDED: { status: 413, message: 'The LoRA does not fit in your LoRA quota (LORA_QUOTA).' },
  URI_TOO_LONG: { status: 414, message: 'The URL is too long.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body has an unsupported content type.' },
  RANGE_NOT_SATISFIABLE: { status: 416, message: 'The requested byte range is outside the file.' },
  QUEUE_LIMIT: { status: 429, message: 'Too many jobs are waiting for this user.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests; slow down.' },
  LOGIN_THROTTLED: { status: 429, message: 'Too many failed logins; wait before trying again.' },
  INTERNAL: { status: 500, message: 'Something went wrong on the server.' },
  LOGIN_BUSY: {
    status: 503,
    message: 'The server is checking many logins right now; try again in a moment.',
  },
  STORE_UNAVAILABLE: { status: 503, message: 'The state store cannot be reached.' },
  WORKER_UNREACHABLE: {
    status: 503,
    message: 'The control-plane process holding this worker did not answer in time.',
  },
  NO_FRONTEND: { status: 503, message: 'No ComfyUI frontend is available yet.' },
  SHUTTING_DOWN: {
    status: 503,
    message: 'This server process is shutting down; ask again and another one will answer.',
  },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error meant for the client: its code picks the HTTP status, its message is safe to show. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  /** Seconds, sent as `Retry-After` with 429 and 503. */
  readonly retryAfter: number | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    opts: { details?: Record<string, unknown>; retryAfter?: number; cause?: unknown } = {},
  ) {
    super(message ?? ERROR_CODES[code].message, { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.details = opts.details;
    this.retryAfter = opts.retryAfter;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  toJSON(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return {
      error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) },
    };
  }
}

/** Thrown by a store when enqueue would exceed the user's pending limit. */
export class QueueLimitError extends AppError {
  constructor(user: string, limit: number) {
    super(
      'QUEUE_LIMIT',
      `User ${user} already has ${limit} jobs waiting, the most allowed. Wait for one to finish or cancel one.`,
      { details: { user, limit }, retryAfter: 10 },
    );
  }
}
