/**
 * Registry: services and their instances as kvd's TypeScript client registers them
 * (`/registry/<service>/<id>` → JSON `{"id","address","metadata"}` on a kept-alive lease). One
 * range, then one watch from the range's revision + 1 keeps the view live; a broken watch reads
 * again. Each instance shows its lease's TTL counting down and "registered since revision N"
 * (its create_revision: etcd stores no time), plus the wall-clock time for instances seen
 * appearing while the page is open.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { range, timeToLive, watch, b64, b64PrefixEnd, type Kv } from '../api/etcd.js';
import { ErrorNote, Loading, Panel } from '../components/common.js';
import { useNow, usePoll } from '../hooks.js';
import { decodeUtf8, displayText, fromBase64 } from '../lib/bytes.js';
import { clockTime, formatSeconds, hexId, int } from '../lib/format.js';

/** kvd's registry prefix (src/client/registry.ts REGISTRY_PREFIX). */
export const REGISTRY_PREFIX = '/registry/';
const TTL_REFRESH_MS = 3000;
/** Lease lookups per refresh at most. */
const TTL_LOOKUPS_MAX = 200;
/** Departures remembered on the page. */
const DEPARTURES_MAX = 20;

export interface Instance {
  readonly key: string;
  readonly service: string;
  readonly id: string;
  readonly address: string | undefined;
  readonly metadata: Record<string, unknown>;
  /** The value is not a registration (not JSON with id and address). */
  readonly malformed: boolean;
  readonly lease: string | undefined;
  readonly createRevision: number;
  /** When this page saw it appear (wall clock ms), if it did. */
  readonly seenAt: number | undefined;
}

/** An instance from a registry key-value, or undefined for a key outside `/registry/<service>/<id>`. */
export function parseInstance(kv: Kv, seenAt: number | undefined): Instance | undefined {
  const key = displayText(fromBase64(kv.key));
  const rest = key.slice(REGISTRY_PREFIX.length).split('/');
  if (!key.startsWith(REGISTRY_PREFIX) || rest.length !== 2 || rest[0] === '' || rest[1] === '') return undefined;
  let address: string | undefined;
  let metadata: Record<string, unknown> = {};
  let malformed = true;
  try {
    const parsed = JSON.parse(decodeUtf8(fromBase64(kv.value)) ?? '') as { id?: unknown; address?: unknown; metadata?: unknown };
    if (typeof parsed.address === 'string' && typeof parsed.id === 'string') {
      address = parsed.address;
      malformed = false;
      if (typeof parsed.metadata === 'object' && parsed.metadata !== null) metadata = parsed.metadata as Record<string, unknown>;
    }
  } catch (error: unknown) {
    void error; // Not JSON: listed as malformed.
  }
  return { key, service: rest[0], id: rest[1], address, metadata, malformed, lease: kv.lease, createRevision: int(kv.create_revision), seenAt };
}

export function RegistryPage() {
  const now = useNow(1000);
  const [instances, setInstances] = useState<ReadonlyMap<string, Instance> | undefined>(undefined);
  const [departures, setDepartures] = useState<Array<{ key: string; at: number }>>([]);
  const [phase, setPhase] = useState<{ revision: number; error: unknown }>({ revision: 0, error: undefined });
  const [ttls, setTtls] = useState<ReadonlyMap<string, number>>(new Map());
  const current = useRef<Map<string, Instance>>(new Map());

  useEffect(() => {
    const controller = new AbortController();
    const prefix = b64(REGISTRY_PREFIX);
    const end = b64PrefixEnd(prefix);
    const follow = async (): Promise<void> => {
      while (!controller.signal.aborted) {
        try {
          const read = await range({ key: prefix, range_end: end }, { signal: controller.signal });
          const next = new Map<string, Instance>();
          for (const kv of read.kvs ?? []) {
            const instance = parseInstance(kv, current.current.get(displayText(fromBase64(kv.key)))?.seenAt);
            if (instance !== undefined) next.set(instance.key, instance);
          }
          current.current = next;
          setInstances(new Map(next));
          const revision = int(read.header.revision);
          setPhase({ revision, error: undefined });
          await watch({ key: prefix, rangeEnd: end, startRevision: revision + 1, signal: controller.signal }, (response) => {
            if (response.canceled === true) throw new Error(`the watch was canceled: ${response.cancel_reason ?? `compacted at ${response.compact_revision}`}`);
            if ((response.events ?? []).length === 0) return;
            for (const event of response.events ?? []) {
              const key = displayText(fromBase64(event.kv.key));
              if (event.type === 'DELETE') {
                if (current.current.delete(key)) setDepartures((previous) => [{ key, at: Date.now() }, ...previous].slice(0, DEPARTURES_MAX));
                continue;
              }
              const known = current.current.get(key);
              const instance = parseInstance(event.kv, known?.seenAt ?? (event.kv.version === '1' ? Date.now() : undefined));
              if (instance !== undefined) current.current.set(key, instance);
            }
            setInstances(new Map(current.current));
            setPhase({ revision: int(response.header.revision), error: undefined });
          });
        } catch (error: unknown) {
          if (controller.signal.aborted) return;
          setPhase((previous) => ({ ...previous, error }));
        }
        // The watch ended or failed: read again after a pause.
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    };
    void follow(); // Detached: runs until the page closes (the abort ends it).
    return () => controller.abort();
  }, []);

  const leaseIds = [...new Set([...(instances?.values() ?? [])].map((instance) => instance.lease).filter((lease): lease is string => lease !== undefined))].sort();
  usePoll(async (signal) => {
    const out = new Map<string, number>();
    for (const id of leaseIds.slice(0, TTL_LOOKUPS_MAX)) {
      try {
        const answer = await timeToLive(id, { signal });
        out.set(id, Date.now() + int(answer.TTL) * 1000);
      } catch (error: unknown) {
        void error; // Shown as unknown TTL.
      }
    }
    if (!signal.aborted) setTtls(out);
    return TTL_REFRESH_MS;
  }, [leaseIds.join(',')]);

  const services = new Map<string, Instance[]>();
  for (const instance of instances?.values() ?? []) services.set(instance.service, [...(services.get(instance.service) ?? []), instance]);
  const names = [...services.keys()].sort();
  return (
    <div class="page">
      <h1>Registry</h1>
      <p class="summary" aria-live="polite">
        {instances === undefined ? 'Reading the registry…' : `${names.length} service${names.length === 1 ? '' : 's'}, ${instances.size} instance${instances.size === 1 ? '' : 's'}`}
        <span class="muted"> · live at revision {phase.revision || '–'} · keys under <code>{REGISTRY_PREFIX}</code></span>
      </p>
      <ErrorNote error={phase.error} prefix="Watch (reconnecting)" />
      <Loading when={instances === undefined} />
      {instances !== undefined && names.length === 0 ? <p class="muted panel">No services registered.</p> : null}
      <div data-testid="services">
        {names.map((name) => (
          <Panel key={name} title={name} id={`service-${name}`} actions={<span class="muted">{services.get(name)?.length} instance{services.get(name)?.length === 1 ? '' : 's'}</span>}>
            <div class="table-wrap">
              <table data-service={name}>
                <thead><tr><th scope="col">Instance</th><th scope="col">Address</th><th scope="col">Metadata</th><th scope="col" class="num">Lease TTL</th><th scope="col">Registered</th></tr></thead>
                <tbody>
                  {(services.get(name) ?? []).sort((a, b) => a.id.localeCompare(b.id)).map((instance) => {
                    const expires = instance.lease === undefined ? undefined : ttls.get(instance.lease);
                    return (
                      <tr key={instance.key} data-instance={instance.id}>
                        <th scope="row" class="mono">{instance.id}</th>
                        <td class="mono">{instance.malformed ? <span class="badge warn">not a registration</span> : instance.address}</td>
                        <td class="mono ellipsis" title={JSON.stringify(instance.metadata, null, 2)}>{Object.keys(instance.metadata).length === 0 ? <span class="muted">–</span> : JSON.stringify(instance.metadata)}</td>
                        <td class="num">{instance.lease === undefined ? <span class="muted">no lease</span> : expires === undefined ? '…' : formatSeconds(Math.max(0, Math.ceil((expires - now) / 1000)))}<span class="muted small"> {instance.lease === undefined ? '' : hexId(instance.lease)}</span></td>
                        <td>since revision {instance.createRevision}{instance.seenAt === undefined ? '' : <span class="muted"> · appeared {clockTime(instance.seenAt)} ({formatSeconds((now - instance.seenAt) / 1000)} ago)</span>}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          </Panel>
        ))}
      </div>
      <Panel title="Recently gone" id="departures-title">
        {departures.length === 0 ? <p class="muted">None while this page was open.</p> : <ol class="log" data-testid="departures">{departures.map((item) => <li key={`${item.key}-${item.at}`}><time>{clockTime(item.at)}</time> <span class="mono">{item.key}</span></li>)}</ol>}
      </Panel>
    </div>
  );
}
