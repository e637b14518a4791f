import { MutationCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { Loader2 } from "lucide-react";
import { useState, type ReactNode } from "react";
import { BrowserRouter, Navigate, Route, Routes, useLocation } from "react-router-dom";
import { Toaster, toast } from "sonner";

import { ApiError, errorMessage } from "./api/errors";
import { Layout } from "./components/Layout";
import { ErrorState } from "./components/ui";
import { CollectionProvider } from "./lib/collection";
import { SessionProvider, useSession } from "./lib/session";
import { AnomaliesPage } from "./pages/Anomalies";
import { AskPage } from "./pages/Ask";
import { CollectionsPage } from "./pages/Collections";
import { DedupPage } from "./pages/Dedup";
import { NotFoundPage } from "./pages/NotFound";
import { RecordEditorPage } from "./pages/RecordEditor";
import { RecordsPage } from "./pages/Records";
import { SearchPage } from "./pages/Search";
import { SignInPage } from "./pages/SignIn";
import { UploadPage } from "./pages/Upload";

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 10_000,
        refetchOnWindowFocus: false,
        // A 4xx will not change by asking again.
        retry: (count, error) => !(error instanceof ApiError && error.status < 500) && count < 2,
      },
    },
    // Every failed change is shown, with the API's own message; a mutation can opt out.
    mutationCache: new MutationCache({
      onError: (error, _vars, _context, mutation) => {
        if (mutation.meta?.silent) return;
        if (error instanceof ApiError && error.status === 401) return;
        toast.error(errorMessage(error));
      },
    }),
  });
}

function FullPage({ children }: { children: ReactNode }) {
  return <div className="flex min-h-screen items-center justify-center p-6">{children}</div>;
}

/** Signed-in views; anyone else goes to the sign-in page and comes back after. */
function RequireSession({ children }: { children: ReactNode }) {
  const { state } = useSession();
  const location = useLocation();
  if (state.status === "loading") {
    return (
      <FullPage>
        <span role="status" className="flex items-center gap-2 text-slate-500">
          <Loader2 className="size-5 animate-spin" aria-hidden /> Connecting to Lookalike…
        </span>
      </FullPage>
    );
  }
  if (state.status === "error") {
    return (
      <FullPage>
        <div className="w-full max-w-lg">
          <ErrorState title="Cannot reach the server" error={state.error} onRetry={() => window.location.reload()} />
        </div>
      </FullPage>
    );
  }
  if (state.status === "signed-out") {
    const next = `${location.pathname}${location.search}`;
    return <Navigate to={`/signin?next=${encodeURIComponent(next)}`} replace />;
  }
  return <CollectionProvider>{children}</CollectionProvider>;
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/signin" element={<SignInPage />} />
      <Route
        element={
          <RequireSession>
            <Layout />
          </RequireSession>
        }
      >
        <Route index element={<Navigate to="/collections" replace />} />
        <Route path="/collections" element={<CollectionsPage />} />
        <Route path="/collections/:collectionId" element={<RecordsPage />} />
        <Route path="/collections/:collectionId/records/new" element={<RecordEditorPage />} />
        <Route path="/records/:recordId" element={<RecordEditorPage />} />
        <Route path="/upload" element={<UploadPage />} />
        <Route path="/search" element={<SearchPage />} />
        <Route path="/ask" element={<AskPage />} />
        <Route path="/dedup" element={<DedupPage />} />
        <Route path="/anomalies" element={<AnomaliesPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}

export function App({ client: given }: { client?: QueryClient }) {
  const [client] = useState(() => given ?? createQueryClient());
  return (
    <QueryClientProvider client={client}>
      <SessionProvider>
        <BrowserRouter>
          <AppRoutes />
        </BrowserRouter>
        <Toaster position="bottom-right" richColors closeButton />
      </SessionProvider>
    </QueryClientProvider>
  );
}
