import { NodeFS } from "@electric-sql/pglite/nodefs";

type NodeFsInit = Awaited<ReturnType<NodeFS["init"]>>["emscriptenOpts"];

/** The part of Emscripten's FS object this file touches; every chmod (chmod, fchmod, a file created by open) goes through doChmod. */
interface EmscriptenFs {
  doChmod?: (stream: unknown, node: unknown, mode: number, dontFollow: boolean) => void;
}

/**
 * PGlite's NodeFS, except that no file it writes gets group or other
 * permissions. PGlite's Emscripten file system sets the mode of each file
 * it creates with an explicit chmod (0666 for the files initdb writes, 0644
 * for those PostgreSQL opens with fopen, under Emscripten's own umask of
 * 022), so the process umask alone does not keep them private. Here every
 * such chmod loses its group and other bits, as PostgreSQL itself wants
 * for a data directory (0700/0600).
 */
export class PrivateNodeFS extends NodeFS {
  override async init(...args: Parameters<NodeFS["init"]>): ReturnType<NodeFS["init"]> {
    const { emscriptenOpts } = await super.init(...args);
    const preRun = [emscriptenOpts.preRun ?? []].flat() as Array<(mod: { FS: EmscriptenFs }) => void>;
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [...preRun, (mod) => ownerOnlyChmod(mod.FS)] } as NodeFsInit };
  }
}

function ownerOnlyChmod(fs: EmscriptenFs): void {
  const doChmod = fs.doChmod;
  // Loud rather than silently world-readable after a PGlite upgrade.
  if (typeof doChmod !== "function") throw new Error("this PGlite's file system has no doChmod: its files cannot be kept private");
  fs.doChmod = (stream, node, mode, dontFollow) => doChmod.call(fs, stream, node, mode & ~0o077, dontFollow);
}
