// A secret shown this once (a new key or token): a read-only field labelled "Secret", a Copy
// button, and the warning that it will not be shown again. It lives only in this component.

import { useState } from "preact/hooks";

export function SecretOnce({ secret, what, onDone }: { secret: string; what: string; onDone: () => void }) {
  const [copied, setCopied] = useState<string | null>(null);
  async function copy() {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("Copied to the clipboard.");
    } catch {
      const field = document.getElementById("secret") as HTMLInputElement | null;
      field?.select();
      setCopied("The browser refused the clipboard: the secret is selected, copy it with Ctrl+C.");
    }
  }
  return (
    <section class="secret-once" aria-labelledby="secret-heading">
      <h2 id="secret-heading">Your new {what}</h2>
      <p class="warning" role="alert">
        Copy it now and store it safely: it will not be shown again.
      </p>
      <label for="secret">Secret</label>
      <div class="secret-row">
        <input id="secret" type="text" readOnly value={secret} spellcheck={false} autocomplete="off" onFocus={(e) => e.currentTarget.select()} />
        <button type="button" onClick={copy}>
          Copy
        </button>
      </div>
      <p class="status" aria-live="polite">
        {copied}
      </p>
      <button type="button" class="secondary" onClick={onDone}>
        Done
      </button>
    </section>
  );
}
