/** Who is signed in: the token in this browser, checked against GET /api/me. */
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useEffect, useMemo, type ReactNode } from "react";

import { api, onUnauthorized, unwrap } from "@/api/client";
import { ApiError } from "@/api/errors";
import { keys } from "@/api/queries";
import { getToken, setToken } from "@/api/token";
import type { Session } from "@/api/types";

export type SessionState =
  | { status: "loading" }
  | { status: "signed-out"; reason?: string }
  | { status: "error"; error: unknown }
  | { status: "signed-in"; session: Session };

interface SessionApi {
  state: SessionState;
  signIn: (token: string) => Promise<Session>;
  signOut: () => void;
}

const SessionContext = createContext<SessionApi | null>(null);

async function whoAmI(token?: string): Promise<Session> {
  const headers = token ? { Authorization: `Bearer ${token}` } : undefined;
  return unwrap(api.GET("/api/me", headers ? { headers } : {}));
}

export function SessionProvider({ children }: { children: ReactNode }) {
  const client = useQueryClient();
  const me = useQuery({
    queryKey: keys.me,
    queryFn: () => whoAmI(),
    retry: (count, error) => !(error instanceof ApiError && error.status < 500) && count < 2,
    staleTime: 5 * 60_000,
  });

  // Another person's data must not outlive their session in the cache.
  const forgetData = useCallback(
    () => client.removeQueries({ predicate: (query) => query.queryKey[0] !== keys.me[0] }),
    [client],
  );

  const signOut = useCallback(() => {
    setToken(null);
    forgetData();
    void client.resetQueries({ queryKey: keys.me });
  }, [client, forgetData]);

  const signIn = useCallback(
    async (token: string) => {
      const session = await whoAmI(token.trim());
      setToken(token.trim());
      forgetData();
      client.setQueryData(keys.me, session);
      return session;
    },
    [client, forgetData],
  );

  useEffect(
    () =>
      onUnauthorized(() => {
        // A token the server no longer takes (expired, revoked) ends the session; without a
        // token, a 401 is what the session query already says.
        if (!getToken()) return;
        setToken(null);
        void client.invalidateQueries({ queryKey: keys.me });
      }),
    [client],
  );

  const state: SessionState = useMemo(() => {
    if (me.data) return { status: "signed-in", session: me.data };
    if (me.error instanceof ApiError && me.error.status === 401) {
      return { status: "signed-out", reason: getToken() ? me.error.message : undefined };
    }
    if (me.error) return { status: "error", error: me.error };
    return { status: "loading" };
  }, [me.data, me.error]);

  const value = useMemo(() => ({ state, signIn, signOut }), [state, signIn, signOut]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionApi {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionProvider");
  return value;
}
