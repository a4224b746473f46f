// Reading data for a page: one hook (useFetch) with its loading state and error, answers of
// requests that were superseded (the inputs changed, a reload, the page unmounted) dropped, and
// a reload after a change. The state's transitions are a pure reducer (fetchReducer).

import { useEffect, useReducer, useRef, useState } from "preact/hooks";

export interface FetchState<T> {
  /** The newest answer: kept while a newer request is in flight, and when it fails. */
  data: T | null;
  /** Why the newest request failed; null while it is in flight or once it succeeded. */
  error: Error | null;
  /** A request is in flight. */
  loading: boolean;
  /** The request whose answer is awaited: answers to any other are dropped. */
  request: number;
}

export type FetchEvent<T> =
  | { type: "started"; request: number }
  | { type: "answered"; request: number; data: T }
  | { type: "failed"; request: number; error: unknown }
  | { type: "replaced"; update: (data: T | null) => T | null };

export function initialFetchState<T>(): FetchState<T> {
  return { data: null, error: null, loading: true, request: 0 };
}

export function fetchReducer<T>(state: FetchState<T>, event: FetchEvent<T>): FetchState<T> {
  switch (event.type) {
    case "started":
      return { ...state, request: event.request, loading: true, error: null };
    case "answered":
      return event.request === state.request ? { ...state, data: event.data, loading: false, error: null } : state;
    case "failed":
      return event.request === state.request ? { ...state, loading: false, error: asError(event.error) } : state;
    case "replaced":
      return { ...state, data: event.update(state.data) };
  }
}

function asError(failure: unknown): Error {
  return failure instanceof Error ? failure : new Error(String(failure));
}

/** What a page shows of a failed request: the error's message, or the thrown value as text. */
export function errorMessage(failure: unknown): string {
  return asError(failure).message;
}

/** Whether hook inputs changed (as Preact compares them); anything differs from none. */
export function inputsChanged(before: readonly unknown[] | null, after: readonly unknown[]): boolean {
  return before === null || before.length !== after.length || before.some((value, index) => !Object.is(value, after[index]));
}

export interface Fetched<T> extends Omit<FetchState<T>, "request"> {
  /**
   * A request for the current inputs is in flight, or about to start: true from the first
   * render with new inputs, so `data` is never taken for theirs before their answer.
   */
  loading: boolean;
  /** Reads again (after a change), keeping the data shown until the answer. */
  reload: () => void;
  /** Sets the data without a request, e.g. to the API's answer to a change. */
  replace: (update: (data: T | null) => T | null) => void;
}

/**
 * Runs `load` on mount, whenever one of `inputs` changes, and on `reload()`. The signal aborts
 * when the request is superseded or the component unmounts; its answer is dropped either way.
 */
export function useFetch<T>(load: (signal: AbortSignal) => Promise<T>, inputs: readonly unknown[]): Fetched<T> {
  const [state, dispatch] = useReducer<FetchState<T>, FetchEvent<T>>(fetchReducer, initialFetchState<T>());
  const [reloads, setReloads] = useState(0);
  const requests = useRef(0);
  const watched = [...inputs, reloads];
  // What the newest request was started for.
  const started = useRef<readonly unknown[] | null>(null);

  useEffect(() => {
    started.current = watched;
    const request = ++requests.current;
    const controller = new AbortController();
    dispatch({ type: "started", request });
    const settled = (event: FetchEvent<T>) => {
      if (!controller.signal.aborted) dispatch(event);
    };
    load(controller.signal).then(
      (data) => settled({ type: "answered", request, data }),
      (error: unknown) => settled({ type: "failed", request, error }),
    );
    return () => controller.abort();
    // `load` is a new closure on every render; `inputs` say when it reads something else.
  }, watched);

  return {
    data: state.data,
    error: state.error,
    loading: state.loading || inputsChanged(started.current, watched),
    reload: () => setReloads((count) => count + 1),
    replace: (update) => dispatch({ type: "replaced", update }),
  };
}
