/** The shapes model downloads are asked for and shared in (see model-downloads.ts). */
import type { ModelDownloadView } from '../admin/view-types.js';
import type { ModelDownloadFolder } from '../worker/protocol.js';

export interface StartDownloadInput {
  url: string;
  folder: ModelDownloadFolder;
  filename: string;
  sha256?: string | undefined;
  token?: string | undefined;
  /** `all`: every connected worker that takes downloads; else these worker ids. */
  workers: 'all' | string[];
}

/**
 * A record as it crosses to the other processes. The secret goes too (through the shared Redis,
 * never logged) while the download runs: whichever process the worker reconnects to may have to
 * send it again.
 */
export interface SharedDownload {
  view: ModelDownloadView;
  secret: { url: string; token?: string | undefined } | null;
  rev: number;
}

/** Starts and cancels downloads for workers connected to any process (set with several processes). */
export interface DownloadRouter {
  startDownloads(input: StartDownloadInput, by: string): Promise<ModelDownloadView[]>;
  cancelDownload(id: string): Promise<ModelDownloadView>;
}

/** The URL without query and fragment: what is shown and audited. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}
