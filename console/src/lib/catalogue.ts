// What a key can be given: the service's scopes (with their descriptions) and plans.

import type { PlanDetails, PlanList, Scope, ScopeCatalogue } from "../api/types";
import { useSession } from "../session";
import { useFetch } from "./fetch";

export interface Catalogue {
  scopes: Scope[];
  plans: PlanDetails[];
}

export function useCatalogue() {
  const { api } = useSession();
  return useFetch<Catalogue>(async (signal) => {
    const [scopes, plans] = await Promise.all([
      api<ScopeCatalogue>("GET", "/v1/scopes", undefined, signal),
      api<PlanList>("GET", "/v1/plans", undefined, signal),
    ]);
    return { scopes: scopes.scopes, plans: plans.plans };
  }, []);
}
