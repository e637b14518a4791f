/** Names for the API's shapes, all taken from the generated OpenAPI types. */
import type { components, operations } from "./schema";

type Schemas = components["schemas"];

/** Response fields that have a default are always sent, though the schema lists them optional. */
type WithRequired<T, K extends keyof T> = T & { [P in K]-?: NonNullable<T[P]> };

export type Session = Schemas["SessionOut"];
export type Collection = Schemas["CollectionOut"];
export type CollectionCreate = Schemas["CollectionCreate"];
export type CollectionUpdate = Schemas["CollectionUpdate"];
export type CatalogRecord = WithRequired<Schemas["RecordOut"], "images">;
export type RecordPage = Omit<Schemas["RecordPage"], "items"> & { items: CatalogRecord[] };
export type RecordUpdate = Schemas["RecordUpdate"];
export type RecordCreated = Omit<Schemas["RecordCreated"], "record"> & { record: CatalogRecord };
export type ImageInfo = Schemas["ImageOut"];
export type IngestResult = Schemas["IngestResultOut"];
export type Job = Schemas["JobOut"];
export type Hit = Schemas["HitOut"];
export type SearchRequest = Schemas["SearchRequest"];
export type SearchResponse = Schemas["SearchResponse"];
export type SearchFilters = Schemas["SearchFilters"];
export type Feedback = Schemas["FeedbackOut"];
export type FeedbackPage = Schemas["FeedbackPage"];
export type FeedbackAction = Schemas["FeedbackCreate"]["action"];
export type PresignOut = Schemas["PresignOut"];
export type AskRequest = Schemas["AskRequest"];
export type AskResponse = Schemas["AskResponse"];
export type AskSource = Schemas["AskSourceOut"];
export type Citation = Schemas["CitationOut"];

// --- duplicates -------------------------------------------------------------------

export type DuplicateTier = "exact" | "near_exact" | "similar";
export type ClusterStatus = "open" | "duplicate" | "not_duplicate" | "merged";
export type DuplicateVerdict = Schemas["DuplicateVerdictOut"];
export type Cluster = Schemas["ClusterOut"];
export type ClusterMember = Schemas["ClusterMemberOut"];
export type ClusterPage = Schemas["ClusterPage"];
/** What a sweep (POST /api/search/cluster) answers; the route documents no 200 model yet. */
export interface ClusterSweep {
  collection: string;
  sweep_id?: string;
  stats: Record<string, unknown>;
  clusters: Cluster[];
}

// --- anomaly review ---------------------------------------------------------------

type AnomalyQuery = NonNullable<operations["list_anomalies_api_qa_anomalies_get"]["parameters"]["query"]>;
export type AnomalySort = NonNullable<AnomalyQuery["sort"]>;
export type ReviewedFilter = NonNullable<AnomalyQuery["reviewed"]>;
export type AnomalyItem = Schemas["AnomalyItemOut"];
export type AnomalyPage = Schemas["AnomalyPage"];
