import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { publicBaseUrl } from '../config/public-url.js';
import type { Config } from '../config/schema.js';
import { parse } from '../http/parse.js';
import type { JobStore } from '../store/types.js';
import { CARDS_CSP, renderLoginCards } from './login-cards.js';
import { participantsFilePath, readParticipantsFile, reconcile } from './login-material.js';
import { userNameSchema } from './user-names.js';

const cardsQuery = z.strictObject({
  /** Only this room's cards. */
  room: z.string().max(100).optional(),
  /** Only these participants, comma-separated. */
  users: z
    .string()
    .max(10_000)
    .transform((s) => s.split(',').filter(Boolean))
    .pipe(z.array(userNameSchema))
    .optional(),
});

/**
 * `GET /api/v1/users/cards` (instructors): the login cards page, built like `comfy-multi users
 * cards` from DATA_DIR/participants.txt checked against the store. Read-only: it issues no link
 * (tokens are stored hashed, so only the file can show them); participants without a known link
 * get a card saying so and the page names the command that makes new ones.
 */
export function loginCardsRoutes(
  api: FastifyInstance,
  deps: { store: JobStore; config: Pick<Config, 'DATA_DIR' | 'PUBLIC_URL' | 'PORT'> },
): void {
  api.get('/users/cards', async (request, reply) => {
    const q = parse(cardsQuery, request.query);
    const { entries, linkNotHere } = await reconcile(
      deps.store,
      readParticipantsFile(participantsFilePath(deps.config.DATA_DIR)),
    );
    const wanted = entries.filter(
      (e) =>
        (q.room === undefined || e.room === q.room) && (q.users === undefined || q.users.includes(e.user)),
    );
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('content-security-policy', CARDS_CSP)
      .header('referrer-policy', 'no-referrer')
      .header('x-content-type-options', 'nosniff')
      .send(
        renderLoginCards(wanted, {
          baseUrl: publicBaseUrl(deps.config),
          missingLinks: linkNotHere.filter((u) => wanted.some((e) => e.user === u)),
        }),
      );
  });
}
