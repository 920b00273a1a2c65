import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { Api, ApiError } from './api/client';

export interface Session {
  api: Api;
  /** Called with any failure: a refused key sends the whole page back to the key prompt. */
  report: (error: unknown) => void;
}

export const SessionContext = createContext<Session>({
  api: new Api(''),
  report: () => {},
});

export function useSession(): Session {
  return useContext(SessionContext);
}

export function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError('http', 0, e instanceof Error ? e.message : String(e));
}
