/**
 * The compact state beside the rules file (issue 13): what an iptables apply knew of the rules
 * file it left, so that the next process (a CLI apply, the daemon's start) need not scan a /16's
 * 130 000 lines to find it again. It holds the merge template as data (the file's own lines
 * around our slots), our chains' names in order, where each chain's rules start in our rules
 * text, and the jump: some 100 KB for a /16 against a 14.5 MB file.
 *
 * It is a cache and never an authority: it is used only for the rules file whose SHA-256 it
 * names, that digest being the anchored newest archive's (the caller checks the file's bytes
 * against it), by the renderer that wrote it; and even then every byte it vouches for is
 * compared with the file itself (mergeFromForm). A missing, torn, stale or edited cache only
 * means the file is parsed, as before it existed.
 */
import { readFileSync, renameSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import * as z from 'zod';
import type { AssignmentColumns } from '../mapping/types.js';
import {
  layoutOfChains,
  renderFormat,
  type ChainLayout,
  type IptablesNat,
} from '../render/iptables.js';
import { mergeFromForm, type ExtractedNat, type MergeTemplate } from '../render/rules-file.js';
import { writeTemporaryBeside } from '../system/atomic-write.js';
import type { RulesetPlan } from './plan.js';

const FORMAT = 'traceable-nat plan cache 1';

/** Where the cache is: config.ts names it, to refuse a configured path that is the cache. */
export { planCacheFile } from '../config.js';

/** Which rules file a cache is for. */
export interface PlanCacheKey {
  readonly rulesFile: string;
  /** The SHA-256 of the rules file's bytes. */
  readonly body: string;
  /** The SHA-256 of the newest archive, whose ruleset the rules file holds. */
  readonly archive: string;
}

const cacheSchema = z.object({
  format: z.literal(FORMAT),
  render: z.string(),
  rulesFile: z.string(),
  body: z.string(),
  archive: z.string(),
  lineEnding: z.string(),
  parts: z.array(
    z.union([z.string(), z.object({ slot: z.enum(['declarations', 'jump', 'rules']) })]),
  ),
  jump: z.string(),
  names: z.array(z.string()),
  textStart: z.array(z.number()),
});

/**
 * Writes the cache for `plan`, whose text the rules file named by `key` now holds; false when
 * the plan has nothing to keep (nftables, no chains of ours, a render without its layout).
 * Written in full and renamed into place; throws what the write throws.
 */
export function writePlanCache(file: string, key: PlanCacheKey, plan: RulesetPlan): boolean {
  const nat = plan.iptables;
  const layout = nat?.layout;
  const template = plan.mergeTemplate;
  if (nat === undefined || layout === undefined || template === undefined) return false;
  if (layout.names.length === 0) return false;
  const content: z.infer<typeof cacheSchema> = {
    format: FORMAT,
    render: renderFormat(),
    rulesFile: resolve(key.rulesFile),
    body: key.body,
    archive: key.archive,
    lineEnding: template.form.lineEnding,
    parts: [...template.form.parts],
    jump: nat.jump,
    names: [...layout.names],
    textStart: Array.from(layout.textStart),
  };
  const temporary = writeTemporaryBeside(file, JSON.stringify(content) + '\n', 0o640);
  try {
    renameSync(temporary, file);
  } catch (error) {
    unlinkSync(temporary);
    throw error;
  }
  return true;
}

/**
 * What the cache says of `text`, the rules file named by `key`, with `rows` the bindings its
 * rules were rendered from (the newest archive's): the merge template, our part as the file
 * holds it, and our chains as a render to reuse. Undefined when there is no cache for this
 * file and renderer, or the file does not hold what the cache says.
 */
export function readPlanCache(
  file: string,
  key: PlanCacheKey,
  text: string,
  rows: AssignmentColumns,
): { template: MergeTemplate; ours: ExtractedNat; render: IptablesNat } | undefined {
  let parsed: z.infer<typeof cacheSchema>;
  try {
    const result = cacheSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    if (!result.success) return undefined;
    parsed = result.data;
  } catch {
    return undefined;
  }
  if (
    parsed.render !== renderFormat() ||
    parsed.rulesFile !== resolve(key.rulesFile) ||
    parsed.body !== key.body ||
    parsed.archive !== key.archive
  )
    return undefined;
  const { names, jump } = parsed;
  const textStart = Float64Array.from(parsed.textStart);
  const merged = mergeFromForm(
    text,
    { parts: parsed.parts, lineEnding: parsed.lineEnding },
    { names, textStart, jump },
  );
  const rulesText = merged?.ours.rulesText;
  if (merged === undefined || rulesText === undefined) return undefined;
  const layout: ChainLayout | undefined = layoutOfChains(names, textStart, rows, rulesText);
  if (layout === undefined) return undefined;
  return {
    template: merged.template,
    ours: merged.ours,
    render: { chains: merged.ours.chains, jump, rulesText, layout },
  };
}
