/** Every read and write of the app, as TanStack Query hooks over the typed client. */
import {
  keepPreviousData,
  useInfiniteQuery,
  useMutation,
  useQuery,
  useQueryClient,
  type QueryClient,
} from "@tanstack/react-query";

import { api, request, unwrap } from "./client";
import type {
  AnomalyPage,
  AnomalySort,
  CatalogRecord,
  Cluster,
  ClusterPage,
  ClusterStatus,
  ClusterSweep,
  ReviewedFilter,
  Collection,
  CollectionCreate,
  CollectionUpdate,
  FeedbackAction,
  IngestResult,
  RecordCreated,
  RecordPage,
  RecordUpdate,
  SearchFilters,
  SearchResponse,
} from "./types";

export const keys = {
  me: ["me"] as const,
  collections: ["collections"] as const,
  collection: (id: string) => ["collections", id] as const,
  records: (collectionId: string) => ["records", collectionId] as const,
  record: (id: string) => ["record", id] as const,
  image: (id: string) => ["image", id] as const,
  feedback: (imageId: string) => ["feedback", imageId] as const,
  search: ["search"] as const,
  similar: (imageId: string) => ["similar", imageId] as const,
  clusters: (collectionId: string) => ["clusters", collectionId] as const,
  anomalies: (collectionId: string) => ["anomalies", collectionId] as const,
};

// --- collections ------------------------------------------------------------------

export function useCollections() {
  return useQuery({
    queryKey: keys.collections,
    queryFn: () => unwrap(api.GET("/api/collections")),
  });
}

export function useCollection(id: string | undefined) {
  return useQuery({
    queryKey: keys.collection(id ?? ""),
    queryFn: () =>
      unwrap(api.GET("/api/collections/{collection_id}", { params: { path: { collection_id: id! } } })),
    enabled: Boolean(id),
  });
}

export function useCreateCollection() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (body: CollectionCreate) => unwrap(api.POST("/api/collections", { body })),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.collections }),
  });
}

export function useUpdateCollection() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ id, body }: { id: string; body: CollectionUpdate }) =>
      unwrap(
        api.PATCH("/api/collections/{collection_id}", {
          params: { path: { collection_id: id } },
          body,
        }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.collections }),
  });
}

export function useDeleteCollection() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (id: string) =>
      unwrap(api.DELETE("/api/collections/{collection_id}", { params: { path: { collection_id: id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: keys.collections }),
  });
}

// --- records ----------------------------------------------------------------------

export function useRecords(collectionId: string | undefined, q: string, page: number, pageSize: number) {
  return useQuery({
    queryKey: [...keys.records(collectionId ?? ""), { q, page, pageSize }],
    queryFn: async () =>
      (await unwrap(
        api.GET("/api/collections/{collection_id}/records", {
          params: {
            path: { collection_id: collectionId! },
            query: { q: q || undefined, limit: pageSize, offset: page * pageSize },
          },
        }),
      )) as RecordPage,
    enabled: Boolean(collectionId),
    placeholderData: keepPreviousData,
  });
}

/** A record; polled while any of its images still waits for its embedding. */
export function useRecord(id: string | undefined) {
  return useQuery({
    queryKey: keys.record(id ?? ""),
    queryFn: async () =>
      (await unwrap(api.GET("/api/records/{record_id}", { params: { path: { record_id: id! } } }))) as CatalogRecord,
    enabled: Boolean(id),
    refetchInterval: (query) =>
      query.state.data?.images.some((i) => i.status === "pending") ? 1000 : false,
  });
}

export interface RecordFields {
  name: string;
  description: string;
  tags: string[];
}

function recordForm(fields: Partial<RecordFields>, files: File[]): FormData {
  const form = new FormData();
  if (fields.name !== undefined) form.set("name", fields.name);
  if (fields.description !== undefined) form.set("description", fields.description);
  if (fields.tags !== undefined) form.set("tags", JSON.stringify(fields.tags));
  for (const file of files) form.append("images", file, file.name);
  return form;
}

export function useCreateRecord(collectionId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ fields, files }: { fields: RecordFields; files: File[] }) =>
      request<RecordCreated>("POST", `/api/collections/${encodeURIComponent(collectionId)}/records`, {
        body: recordForm(fields, files),
      }),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: keys.records(collectionId) });
      void client.invalidateQueries({ queryKey: keys.collections });
    },
  });
}

export function useUpdateRecord(id: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (body: RecordUpdate) =>
      (await unwrap(api.PATCH("/api/records/{record_id}", { params: { path: { record_id: id } }, body }))) as CatalogRecord,
    onSuccess: (record) => {
      client.setQueryData(keys.record(id), record);
      void client.invalidateQueries({ queryKey: keys.records(record.collection_id) });
    },
  });
}

export function useDeleteRecord() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (record: CatalogRecord) =>
      unwrap(api.DELETE("/api/records/{record_id}", { params: { path: { record_id: record.id } } })),
    onSuccess: (_, record) => {
      client.removeQueries({ queryKey: keys.record(record.id) });
      void client.invalidateQueries({ queryKey: keys.records(record.collection_id) });
      void client.invalidateQueries({ queryKey: keys.collections });
    },
  });
}

export function useAddImages(recordId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (files: File[]) =>
      request<IngestResult[]>("POST", `/api/records/${encodeURIComponent(recordId)}/images`, {
        body: recordForm({}, files),
      }),
    onSettled: () => client.invalidateQueries({ queryKey: keys.record(recordId) }),
  });
}

export function useRemoveImage(recordId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (imageId: string) =>
      unwrap(
        api.DELETE("/api/records/{record_id}/images/{image_id}", {
          params: { path: { record_id: recordId, image_id: imageId } },
        }),
      ),
    onMutate: async (imageId) => {
      await client.cancelQueries({ queryKey: keys.record(recordId) });
      const before = client.getQueryData<CatalogRecord>(keys.record(recordId));
      if (before) {
        client.setQueryData<CatalogRecord>(keys.record(recordId), {
          ...before,
          images: before.images.filter((i) => i.id !== imageId),
        });
      }
      return { before };
    },
    onError: (_error, _imageId, context) => {
      if (context?.before) client.setQueryData(keys.record(recordId), context.before);
    },
    onSettled: () => client.invalidateQueries({ queryKey: keys.record(recordId) }),
  });
}

// --- images, feedback -------------------------------------------------------------

export function useImage(id: string | undefined) {
  return useQuery({
    queryKey: keys.image(id ?? ""),
    queryFn: () => unwrap(api.GET("/api/images/{image_id}", { params: { path: { image_id: id! } } })),
    enabled: Boolean(id),
    // Until its enrichment has run, the image gains a thumbnail, scores and a verdict: look again.
    refetchInterval: (query) => {
      const stages = Object.values(query.state.data?.enrichment ?? {});
      return stages.some((s) => s === "pending" || s === "running") ? 2000 : false;
    },
  });
}

export function useFeedbackHistory(imageId: string | undefined) {
  return useQuery({
    queryKey: keys.feedback(imageId ?? ""),
    queryFn: () =>
      unwrap(
        api.GET("/api/images/{image_id}/feedback", {
          params: { path: { image_id: imageId! }, query: { limit: 20 } },
        }),
      ),
    enabled: Boolean(imageId),
  });
}

export interface FeedbackInput {
  imageId: string;
  action: FeedbackAction;
  query?: { image_id?: string; text?: string } | undefined;
  note?: string | undefined;
}

export function useGiveFeedback() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ imageId, action, query, note }: FeedbackInput) =>
      unwrap(api.POST("/api/feedback", { body: { image_id: imageId, action, query: query ?? null, note: note ?? null } })),
    onSuccess: (_, { imageId }) => client.invalidateQueries({ queryKey: keys.feedback(imageId) }),
  });
}

// --- search -----------------------------------------------------------------------

/** What a search asks, once submitted; a new object starts a new result list. */
export interface SearchQuery {
  collection: string;
  kind: "file" | "image_id" | "text";
  file?: File | undefined;
  imageId?: string | undefined;
  text?: string | undefined;
  limit: number;
  scoreThreshold?: number | undefined;
  phashGate?: number | undefined;
  filter?: SearchFilters | undefined;
  /** Also the hits below the model's relevance cut-off ("weaker matches"). */
  includeWeaker?: boolean | undefined;
  /** Distinguishes two searches with equal fields (the same file dropped twice). */
  nonce: number;
}

export function searchPage(query: SearchQuery, offset: number): Promise<SearchResponse> {
  const common = {
    collection: query.collection,
    limit: query.limit,
    offset,
    score_threshold: query.scoreThreshold ?? null,
    phash_gate: query.kind === "text" ? null : (query.phashGate ?? null),
    filter: query.filter ?? null,
    include_payload: true,
    include_weaker: query.includeWeaker ?? false,
  };
  if (query.kind === "file") {
    const form = new FormData();
    form.set("file", query.file!, query.file!.name || "query.png");
    for (const [key, value] of Object.entries(common)) {
      if (value === null || value === undefined) continue;
      form.set(key, typeof value === "object" ? JSON.stringify(value) : String(value));
    }
    return request<SearchResponse>("POST", "/api/search/similar", { body: form });
  }
  const body =
    query.kind === "text"
      ? // Vector mode: the scores shown are cosine similarities, comparable across results and
        // with the image search's. (Hybrid scores are rank fusion figures, ~0.03.)
        { ...common, text_query: query.text ?? "", mode: "vector" as const }
      : { ...common, image_id: query.imageId ?? "" };
  return request<SearchResponse>("POST", "/api/search/similar", { body });
}

export function useSearch(query: SearchQuery | null) {
  return useInfiniteQuery({
    queryKey: [...keys.search, query?.nonce ?? 0],
    queryFn: ({ pageParam }) => searchPage(query!, pageParam),
    initialPageParam: 0,
    // The server says whether another page exists: no guessing from a full page.
    getNextPageParam: (last, pages) => (query && last.more ? pages.length * query.limit : undefined),
    enabled: query !== null,
    staleTime: Infinity,
  });
}

export function useSimilar(collection: string | undefined, imageId: string | undefined) {
  return useQuery({
    queryKey: [...keys.similar(imageId ?? ""), collection],
    queryFn: () =>
      searchPage({ collection: collection!, kind: "image_id", imageId, limit: 8, nonce: 0 }, 0),
    enabled: Boolean(collection && imageId),
  });
}

// --- dedup ------------------------------------------------------------------------

export function useClusters(collectionId: string | undefined, status: ClusterStatus | "all", enabled = true) {
  return useQuery({
    queryKey: [...keys.clusters(collectionId ?? ""), status],
    queryFn: () =>
      unwrap(
        api.GET("/api/collections/{collection_id}/clusters", {
          params: {
            path: { collection_id: collectionId! },
            query: { status: status === "all" ? undefined : status, limit: 100 },
          },
        }),
      ),
    enabled: Boolean(collectionId) && enabled,
  });
}

export function useFindDuplicates(collectionId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async () =>
      (await unwrap(
        api.POST("/api/search/cluster", {
          body: { collection: collectionId, tiers: ["exact", "near_exact", "similar"] },
        }),
      )) as ClusterSweep,
    onSuccess: () => client.invalidateQueries({ queryKey: keys.clusters(collectionId) }),
  });
}

export type ClusterAction =
  | { kind: "mark"; verdict: "duplicate" | "not_duplicate" }
  | { kind: "merge"; keeper: string; mode: "move" | "drop" }
  | { kind: "tag"; tags: string[] };

function optimistic(cluster: Cluster, action: ClusterAction): Cluster {
  switch (action.kind) {
    case "mark":
      return { ...cluster, status: action.verdict };
    case "merge":
      return { ...cluster, status: "merged", keeper: action.keeper };
    case "tag":
      return cluster;
  }
}

function patchClusters(client: QueryClient, collectionId: string, update: (c: Cluster) => Cluster, id: string) {
  client.setQueriesData<ClusterPage>({ queryKey: keys.clusters(collectionId) }, (page) =>
    page ? { ...page, clusters: page.clusters.map((c) => (c.id === id ? update(c) : c)) } : page,
  );
}

/** A verdict, a merge or tags on a cluster; the list shows the outcome before the server answers. */
export function useClusterAction(collectionId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: ({ cluster, action }: { cluster: Cluster; action: ClusterAction }) => {
      const params = { path: { cluster_id: cluster.id } };
      switch (action.kind) {
        case "mark":
          return unwrap(api.POST("/api/clusters/{cluster_id}/mark", { params, body: { verdict: action.verdict } }));
        case "merge":
          return unwrap(
            api.POST("/api/clusters/{cluster_id}/merge", { params, body: { keeper: action.keeper, mode: action.mode } }),
          );
        case "tag":
          return unwrap(api.POST("/api/clusters/{cluster_id}/tag", { params, body: { tags: action.tags } }));
      }
    },
    onMutate: async ({ cluster, action }) => {
      await client.cancelQueries({ queryKey: keys.clusters(collectionId) });
      const before = client.getQueriesData<ClusterPage>({ queryKey: keys.clusters(collectionId) });
      patchClusters(client, collectionId, (c) => optimistic(c, action), cluster.id);
      return { before };
    },
    onError: (_error, _vars, context) => {
      for (const [key, data] of context?.before ?? []) client.setQueryData(key, data);
    },
    onSuccess: (updated) => patchClusters(client, collectionId, () => updated, updated.id),
    onSettled: () => client.invalidateQueries({ queryKey: keys.clusters(collectionId) }),
  });
}

// --- anomalies --------------------------------------------------------------------

export function useAnomalies(
  collectionId: string | undefined,
  sort: AnomalySort,
  reviewed: ReviewedFilter,
  needsReview?: boolean,
  pageSize = 24,
  enabled = true,
) {
  return useInfiniteQuery({
    queryKey: [...keys.anomalies(collectionId ?? ""), sort, reviewed, needsReview ?? "all"],
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET("/api/qa/anomalies", {
          params: {
            query: {
              collection: collectionId!,
              sort,
              reviewed,
              ...(needsReview === undefined ? {} : { needs_review: needsReview }),
              limit: pageSize,
              offset: pageParam,
            },
          },
        }),
      ),
    initialPageParam: 0,
    getNextPageParam: (last, pages) => {
      const seen = pages.reduce((n, p) => n + p.items.length, 0);
      return seen < last.total && last.items.length > 0 ? seen : undefined;
    },
    enabled: Boolean(collectionId) && enabled,
  });
}

export function useReviewAnomaly(collectionId: string) {
  const client = useQueryClient();
  type Pages = { pages: AnomalyPage[]; pageParams: unknown[] };
  const patch = (imageId: string, reviewed: boolean) =>
    client.setQueriesData<Pages>({ queryKey: keys.anomalies(collectionId) }, (data) =>
      data
        ? {
            ...data,
            pages: data.pages.map((p) => ({
              ...p,
              items: p.items.map((i) =>
                i.image_id === imageId
                  ? { ...i, reviewed, reviewed_at: reviewed ? new Date().toISOString() : null }
                  : i,
              ),
            })),
          }
        : data,
    );
  return useMutation({
    mutationFn: ({ imageId, reviewed }: { imageId: string; reviewed: boolean }) =>
      unwrap(
        api.POST("/api/qa/anomalies/{image_id}/review", {
          params: { path: { image_id: imageId } },
          body: { reviewed },
        }),
      ),
    onMutate: async ({ imageId, reviewed }) => {
      await client.cancelQueries({ queryKey: keys.anomalies(collectionId) });
      const before = client.getQueriesData<Pages>({ queryKey: keys.anomalies(collectionId) });
      patch(imageId, reviewed);
      return { before };
    },
    onError: (_error, _vars, context) => {
      for (const [key, data] of context?.before ?? []) client.setQueryData(key, data);
    },
  });
}

/** Wait for a background job to finish (polling its status), and say how it ended. */
export async function waitForJob(jobId: string, { intervalMs = 1000, timeoutMs = 10 * 60_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await unwrap(api.GET("/api/jobs/{job_id}", { params: { path: { job_id: jobId } } }));
    if (job.status === "done" || job.status === "failed" || Date.now() > deadline) return job;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Recompute a collection's anomaly scores; settles when the background job has finished. */
export function useRecomputeAnomalies(collectionId: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async () => {
      const { job_id } = await unwrap(
        api.POST("/api/qa/anomalies/recompute", { body: { collection: collectionId } }),
      );
      const job = await waitForJob(job_id);
      if (job.status === "failed") throw new Error(`Recomputing the scores failed: ${job.error ?? "see the server log"}`);
      return job;
    },
    onSettled: () => client.invalidateQueries({ queryKey: keys.anomalies(collectionId) }),
  });
}

export type { Collection };
