// What is left of each limit of a key right now, as meters with their numbers and reset times.

import type { KeyLimits } from "../api/types";
import { useFetch } from "../lib/fetch";
import { count, dateTime } from "../lib/format";
import { limitLabel } from "../lib/insight";
import { useSession } from "../session";

export function Headroom({ keyId }: { keyId: string }) {
  const { api } = useSession();
  const read = useFetch((signal) => api<KeyLimits>("GET", `/v1/keys/${keyId}/limits`, undefined, signal), [keyId]);
  const limits = read.data?.limits ?? [];
  return (
    <section class="headroom" aria-labelledby="headroom-heading">
      <div class="title-row">
        <h2 id="headroom-heading">Headroom</h2>
        <button type="button" class="secondary" onClick={read.reload}>Refresh</button>
      </div>
      {read.error && <p class="form-error" role="alert">{read.error.message}</p>}
      {read.data && limits.length === 0 && <p>No rate limit or quota applies to this key.</p>}
      {read.data?.quota_exceeded_until && (
        <p class="unusual" role="status">Over its quota until {dateTime(read.data.quota_exceeded_until)}.</p>
      )}
      <ul class="meters">
        {limits.map((limit) => {
          const id = `limit-${limit.name}`;
          return (
            <li key={limit.name}>
              <label for={id}>{limitLabel(limit.name)}</label>
              <meter id={id} min={0} max={limit.limit} value={Math.min(limit.used, limit.limit)}
                high={limit.limit * 0.8} optimum={0} />
              <span class="meter-text">
                {count(limit.used)} of {count(limit.limit)} used, {count(limit.remaining)} left
                {limit.resets_at
                  ? `; ${limit.source === "usage" ? "resets" : "frees up"} ${dateTime(limit.resets_at)}`
                  : ""}
              </span>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
