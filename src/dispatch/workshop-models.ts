/**
 * The workshop's model list: the files every worker must hold before it takes jobs. Kept as one
 * blob (`models/workshop`) so every process and a state export see it. A new or ephemeral worker
 * that registers without some of them downloads the missing ones first (see
 * ModelDownloadService.hello). An entry's bearer token is kept here (a worker started tomorrow
 * needs it too) but never shown back: views say only `withToken`.
 */
import { z } from 'zod';
import type { BlobStore } from '../store/types.js';
import { MODEL_DOWNLOAD_FOLDERS, modelFileNameSchema, type ModelDownloadFolder } from '../worker/protocol.js';

export const WORKSHOP_NS = 'models';
export const WORKSHOP_KEY = 'workshop';

export interface WorkshopModel {
  url: string;
  folder: ModelDownloadFolder;
  filename: string;
  sha256?: string | undefined;
  token?: string | undefined;
}

import type { WorkshopModelView } from '../admin/view-types.js';

export type { WorkshopModelView };

const storedSchema = z.object({
  models: z.array(
    z.object({
      url: z.string(),
      folder: z.enum(MODEL_DOWNLOAD_FOLDERS),
      filename: modelFileNameSchema,
      sha256: z.string().optional(),
      token: z.string().optional(),
    }),
  ),
});

export async function loadWorkshopModels(store: BlobStore): Promise<WorkshopModel[]> {
  const raw = await store.getBlob(WORKSHOP_NS, WORKSHOP_KEY);
  if (raw === null) return [];
  try {
    const r = storedSchema.safeParse(JSON.parse(raw));
    return r.success ? r.data.models : [];
  } catch {
    return [];
  }
}

export async function saveWorkshopModels(store: BlobStore, models: WorkshopModel[]): Promise<void> {
  await store.putBlob(WORKSHOP_NS, WORKSHOP_KEY, JSON.stringify({ models }));
}

export function workshopView(m: WorkshopModel, shown: (url: string) => string): WorkshopModelView {
  return {
    url: shown(m.url),
    folder: m.folder,
    filename: m.filename,
    sha256: m.sha256 ?? null,
    withToken: m.token !== undefined,
  };
}
