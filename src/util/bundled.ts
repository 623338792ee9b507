/**
 * Whether this code runs from one of the build's esbuild bundles in dist/bin (kvctl, kvd, the
 * front-end worker; scripts/bundle.mjs defines KVD_BUNDLED there) rather than from tsc's output
 * under dist/src: files of the build (proto.json, the console, the worker's entry) are then found
 * relative to dist/bin, since every bundled module's `import.meta.url` is the bundle's own.
 */
declare const KVD_BUNDLED: boolean | undefined;

export const BUNDLED: boolean = typeof KVD_BUNDLED !== 'undefined' && KVD_BUNDLED;
