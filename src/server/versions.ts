/**
 * What kvd reports as its version. Maintenance.Status says the etcd API version kvd implements;
 * /version says 3.4 as well, so clients (Patroni, APISIX) use the v3 API.
 */

/** Version reported by Maintenance.Status: the etcd API version kvd implements. */
export const SERVER_VERSION = '3.4.0';

/**
 * /version's answer. etcdcluster 3.4.0 makes clients use the v3 API; the server version is 3.4.0
 * with semver build metadata naming kvd, which version comparisons ignore (a `-kvd` pre-release
 * would sort below 3.4.0 and fail ">= 3.4" checks).
 */
export const VERSION_INFO = { etcdserver: `${SERVER_VERSION}+kvd.0.1.0`, etcdcluster: '3.4.0' } as const;
