/**
 * Environment variables a test sets for code that reads them itself (the S3 file store takes its
 * credentials from the standard AWS variables), put back afterwards so other test files in the
 * same worker do not see them.
 */

/** Sets `vars` in process.env and returns what puts the previous values back (unset ones deleted). */
export function setProcessEnv(vars: Record<string, string>): () => void {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}
