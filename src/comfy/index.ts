/** ComfyUI protocol, prompt validation and tools, and the worker's ComfyUI client. */
export * from './protocol.js';
export * from './validate-prompt.js';
export * from './prompt-tools.js';
export * from './prompt-outcome.js';
export * from './model-folders.js';
export * from './client-errors.js';
export * from './comfy-socket.js';
export * from './comfy-client.js';
