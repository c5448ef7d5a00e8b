for (const spec of process.argv.slice(2)) {
  await import(spec);
  console.log(spec.padEnd(28), process.moduleLoadList.some((m) => m.includes('deps/undici')));
}
