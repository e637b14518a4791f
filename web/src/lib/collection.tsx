/** The collection the Upload, Search, Ask, Dedup and Anomalies views work on, picked in the header. */
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";

import { useCollections } from "@/api/queries";
import type { Collection } from "@/api/types";

const KEY = "lookalike.collection";

interface CurrentCollection {
  collection: Collection | undefined;
  collections: Collection[];
  isLoading: boolean;
  error: unknown;
  select: (id: string) => void;
}

const CollectionContext = createContext<CurrentCollection | null>(null);

function stored(): string | null {
  try {
    return window.localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function CollectionProvider({ children }: { children: ReactNode }) {
  const query = useCollections();
  const [selected, setSelected] = useState<string | null>(stored);

  const select = useCallback((id: string) => {
    setSelected(id);
    try {
      window.localStorage.setItem(KEY, id);
    } catch {
      // no storage: the choice lasts for this tab
    }
  }, []);

  const value = useMemo(() => {
    const collections = query.data ?? [];
    const collection = collections.find((c) => c.id === selected) ?? collections[0];
    return { collection, collections, isLoading: query.isLoading, error: query.error, select };
  }, [query.data, query.isLoading, query.error, selected, select]);

  return <CollectionContext.Provider value={value}>{children}</CollectionContext.Provider>;
}

export function useCurrentCollection(): CurrentCollection {
  const value = useContext(CollectionContext);
  if (!value) throw new Error("useCurrentCollection outside CollectionProvider");
  return value;
}
