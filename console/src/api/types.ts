// The API's request and response types, by the names the console uses. Each is generated from
// control/openapi.json into openapi/schema.ts (`npm run generate`, part of the build), so a change
// to the API's document that the console does not follow fails the type check.

import type { components } from "../../openapi/schema";

type Schemas = components["schemas"];

export type ApiErrorBody = Schemas["Error"];
export type Session = Schemas["Session"];
export type Role = Schemas["Role"];
export type Environment = Schemas["Environment"];

/** A key as the admin API shows it; `key` (the secret) only in the answer of create and rotate. */
export type Key = Schemas["Key"];
export type KeyList = Schemas["KeyList"];
export type CreateKey = Schemas["CreateKey"];
export type UpdateKey = Schemas["UpdateKey"];
export type RotateKey = Schemas["RotateKey"];
/** Effective limits, the monthly quota included; null is unlimited. */
export type Limits = Schemas["AdminLimits"];

export type PlanDetails = Schemas["PlanDetails"];
export type PlanList = Schemas["PlanList"];
export type CreatePlan = Schemas["CreatePlan"];
export type UpdatePlan = Schemas["UpdatePlan"];

export type ScopeCatalogue = Schemas["ScopeCatalogue"];
export type Scope = ScopeCatalogue["scopes"][number];

/** A key's or a team's usage: the console reads both the same way. */
export type Usage = Schemas["KeyUsage"] | Schemas["TeamUsage"];
export type UsageBucket = Schemas["UsageBucket"];
/** A key's recent denials and failed upstream answers, newest first. */
export type KeyEvents = Schemas["KeyEvents"];
/** Headroom: each limit of a key in force and what is used of it. */
export type KeyLimits = Schemas["KeyLimits"];

/** A management token; `token` (the secret) only in the answer that created it. */
export type Token = Schemas["Token"];
export type TokenList = Schemas["TokenList"];
export type CreateToken = Schemas["CreateToken"];

/** A proxy of the fleet: its identity, state, snapshot lag and last posts. */
export type Proxy = Schemas["Proxy"];
export type ProxyList = Schemas["ProxyList"];
export type EnrollmentToken = Schemas["EnrollmentToken"];
export type EnrollmentTokenList = Schemas["EnrollmentTokenList"];

export type AuditEntry = Schemas["AuditEntry"];
export type AuditPage = Schemas["AuditPage"];

/** A team: its plan, its own quotas, the quotas its keys share and what they used. */
export type Team = Schemas["Team"];
export type TeamList = Schemas["TeamList"];
export type CreateTeam = Schemas["CreateTeam"];
export type UpdateTeam = Schemas["UpdateTeam"];

/** A webhook endpoint; `secret` only in the answers of create and rotate-secret. */
export type Webhook = Schemas["Webhook"];
export type WebhookList = Schemas["WebhookList"];
export type CreateWebhook = Schemas["CreateWebhook"];
export type UpdateWebhook = Schemas["UpdateWebhook"];
export type WebhookDelivery = Schemas["WebhookDelivery"];
export type WebhookDeliveryList = Schemas["WebhookDeliveryList"];
export type WebhookTestQueued = Schemas["WebhookTestQueued"];
/** The event types an endpoint may receive, as the API's document lists them. */
export type EventType = CreateWebhook["events"][number];
