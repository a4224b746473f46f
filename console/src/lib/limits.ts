// Rate limits and quotas as the forms take them: the five windows, and a limit as typed.

import type { Limits } from "../api/types";

/** The windows a plan or a key's overrides limit, in the order the forms show them. */
export const LIMIT_FIELDS = ["per_minute", "per_hour", "per_day", "concurrent", "per_month"] as const satisfies readonly (keyof Limits)[];

export type LimitField = (typeof LIMIT_FIELDS)[number];

/** A limit as sent from a form: see limitValue. */
export type TypedLimit = number | string | null;

/**
 * A limit as typed: empty is null (no override), a number as a number (the API says what is
 * wrong with -3 or 1.5), anything else as the text, so that the API's message names the field
 * (NaN would be sent as null, silently clearing the limit).
 */
export function limitValue(typed: string): TypedLimit {
  const text = typed.trim();
  if (text === "") return null;
  const number = Number(text);
  return Number.isFinite(number) ? number : text;
}

/** Every window's limit as typed, by its field. */
export function typedLimits(typed: Record<LimitField, string>): Record<LimitField, TypedLimit> {
  return Object.fromEntries(LIMIT_FIELDS.map((field) => [field, limitValue(typed[field])])) as Record<LimitField, TypedLimit>;
}
