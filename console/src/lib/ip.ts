// Allowed-IP entries checked as they are typed, with the API's wording; the API checks again.

/** An IPv4 or IPv6 address, or a CIDR block of one. */
export function isIpOrCidr(text: string): boolean {
  const [address, prefix, extra] = text.split("/");
  if (extra !== undefined || address === "") return false;
  const v6 = address.includes(":");
  if (prefix !== undefined) {
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (v6 ? 128 : 32)) return false;
  }
  if (v6) {
    if (!/^[0-9a-fA-F:.]+$/.test(address)) return false;
    try {
      new URL(`http://[${address}]/`);
      return true;
    } catch {
      return false;
    }
  }
  const octets = address.split(".");
  return octets.length === 4 && octets.every((octet) => /^(0|[1-9]\d{0,2})$/.test(octet) && Number(octet) <= 255);
}

/** The entries of a one-per-line (or comma-separated) list. */
export function ipEntries(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
}

/** The first invalid entry as the API would name it, or null. */
export function ipProblem(text: string): string | null {
  const entries = ipEntries(text);
  const index = entries.findIndex((entry) => !isIpOrCidr(entry));
  return index < 0 ? null : `allowed_ips[${index}]: invalid IP or CIDR ${JSON.stringify(entries[index])}`;
}
