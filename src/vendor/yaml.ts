/**
 * yaml, through one file: tsc emits a plain re-export, which the build
 * (scripts/bundle-vendor.mjs) replaces with yaml bundled into it (one module
 * to load instead of ~70). Import yaml from here, never from 'yaml'. Add a
 * name below when the code needs one more of yaml's exports.
 */
export { Document, isMap, isPair, isScalar, isSeq, parse, parseDocument, Parser } from 'yaml';
export type { Node, Pair, YAMLMap, YAMLSeq } from 'yaml';
