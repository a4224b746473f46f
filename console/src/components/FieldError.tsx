// The API's error message next to the field it names (or at the top of the form when it
// names none), linked to the field with aria-describedby.

import { ApiError } from "../api/client";
import { errorMessage } from "../lib/fetch";

/** The message for `field` when `error` names it (`allowed_ips` also takes `allowed_ips[2]`). */
export function messageFor(error: unknown, field: string): string | null {
  if (!(error instanceof ApiError) || !error.field) return null;
  const named = error.field;
  return named === field || named.startsWith(`${field}[`) || named.startsWith(`${field}.`) ? error.message : null;
}

/** The message of an error that names none of `fields`, for the form's top. */
export function formMessage(error: unknown, fields: string[]): string | null {
  if (!error) return null;
  if (error instanceof ApiError && fields.some((field) => messageFor(error, field))) return null;
  return errorMessage(error);
}

export function FieldError({ id, message }: { id: string; message: string | null }) {
  return message ? (
    <p class="field-error" id={id} role="alert">
      {message}
    </p>
  ) : null;
}

export function FormError({ message }: { message: string | null }) {
  return message ? (
    <p class="form-error" role="alert">
      {message}
    </p>
  ) : null;
}
