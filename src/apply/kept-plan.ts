/**
 * What the daemon keeps of the plan it applied last, between applies (issue 13: its idle
 * memory). The rules file holds the plan's text, and while it is still the file that apply left
 * (its identity, see FileIdentity), the text need not be held twice: the daemon keeps the plan
 * without it (TextlessPlan) and reads it back from the file for the next apply, which then
 * trusts the plan as before. Anything else (the file touched, replaced, unreadable, a text
 * that does not fit) gives no trusted plan: the next apply reads the file and the kernel as
 * the CLI does, which is only slower.
 */
import { readFileSync } from 'node:fs';
import { identityOf, sameIdentity } from '../system/file-identity.js';
import type { TrustedPlan } from './apply.js';
import { planWithText, textlessPlan, type RulesetPlan, type TextlessPlan } from './plan.js';

export type KeptTrust =
  | (Omit<TrustedPlan, 'plan'> & { readonly plan: RulesetPlan; readonly textless?: undefined })
  | (Omit<TrustedPlan, 'plan'> & {
      readonly plan?: undefined;
      readonly textless: TextlessPlan;
      /**
       * The file is ASCII (as many bytes as the text has characters), so its bytes are read
       * back as Latin-1, the same text for those bytes, without UTF-8 decoding (a /16: 14.5 MB,
       * 15-55 ms against 2-13 ms here).
       */
      readonly ascii: boolean;
    });

/**
 * What to keep of `trusted`, the plan an apply left active with `flatText` the rules file's
 * text as one flat string (ApplyResult.rulesText; undefined when the file does not hold the
 * plan's text): the plan without its text when the file's identity is known, else the plan as
 * it is (a rules file with CRLF line ends, say, where our rules are no run of `\n` lines).
 */
export function keepTrust(trusted: TrustedPlan, flatText: string | undefined): KeptTrust {
  const { plan, ...rest } = trusted;
  const textless =
    flatText !== undefined && trusted.rulesFile !== undefined
      ? textlessPlan(plan, flatText)
      : undefined;
  if (textless !== undefined) {
    const ascii = trusted.rulesFile?.size === BigInt(textless.length);
    return { ...rest, textless, ascii };
  }
  return { ...rest, plan };
}

/**
 * The trusted plan `kept` stands for, its text read back from `rulesFile` when it was kept
 * without: undefined when the file is no longer the one that apply left, unchanged.
 */
export function restoreTrust(kept: KeptTrust, rulesFile: string): TrustedPlan | undefined {
  if (kept.plan !== undefined) return kept;
  const { textless, ascii, ...rest } = kept;
  // Its identity before and after the read: a write in between moves its status change time.
  if (!sameIdentity(kept.rulesFile, identityOf(rulesFile))) return undefined;
  let bytes: Buffer;
  try {
    bytes = readFileSync(rulesFile);
  } catch {
    return undefined;
  }
  if (!sameIdentity(kept.rulesFile, identityOf(rulesFile))) return undefined;
  const restored = planWithText(textless, bytes.toString(ascii ? 'latin1' : 'utf8'));
  return restored && { ...rest, plan: restored };
}
