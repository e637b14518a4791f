import { KeyRound } from "lucide-react";
import { useState, type FormEvent } from "react";
import { Navigate, useSearchParams } from "react-router-dom";

import { errorMessage } from "@/api/errors";
import { Button, Card, Field, Textarea } from "@/components/ui";
import { useSession } from "@/lib/session";

function safeNext(next: string | null): string {
  // Only paths of this app: never an absolute URL someone put in the link.
  return next && next.startsWith("/") && !next.startsWith("//") ? next : "/collections";
}

export function SignInPage() {
  const { state, signIn } = useSession();
  const [params] = useSearchParams();
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const next = safeNext(params.get("next"));

  if (state.status === "signed-in") return <Navigate to={next} replace />;

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (!token.trim()) {
      setError("Paste a token first.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await signIn(token);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  const expired = state.status === "signed-out" ? state.reason : undefined;
  return (
    <main className="flex min-h-screen items-center justify-center bg-gradient-to-b from-brand-50 to-slate-50 p-4">
      <Card className="w-full max-w-md p-6 sm:p-8">
        <div className="mb-6 flex items-center gap-3">
          <img src="/favicon.svg" alt="" className="size-10" />
          <div>
            <h1 className="text-xl font-semibold">Sign in to Lookalike</h1>
            <p className="text-sm text-slate-600">Image similarity search and visual QC</p>
          </div>
        </div>
        <form onSubmit={submit} className="space-y-4" noValidate>
          <Field
            label="Access token"
            hint={
              <>
                A bearer token (<code>lookalike token create --user you --tenant team</code>) or an API key (
                <code>lk_…</code>). It stays in this browser.
              </>
            }
          >
            {(props) => (
              <Textarea
                {...props}
                name="token"
                autoComplete="off"
                spellCheck={false}
                className="min-h-28 font-mono text-xs"
                value={token}
                onChange={(event) => setToken(event.target.value)}
                aria-invalid={error ? true : undefined}
                placeholder="eyJhbGciOi…"
              />
            )}
          </Field>
          {(error ?? expired) && (
            <p role="alert" className="rounded-md bg-red-50 px-3 py-2 text-sm text-red-700">
              {error ?? `Your session ended: ${expired}`}
            </p>
          )}
          <Button type="submit" variant="primary" className="w-full" busy={busy}>
            <KeyRound className="size-4" aria-hidden />
            Sign in
          </Button>
        </form>
      </Card>
    </main>
  );
}
