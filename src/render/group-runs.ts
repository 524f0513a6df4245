/** Splits items, in order, into runs of equal key (one tree level's children, for both families). */
export function groupRuns<T>(items: readonly T[], keyOf: (item: T) => unknown): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let currentKey: unknown;
  items.forEach((item, index) => {
    const key = keyOf(item);
    if (index === 0 || key !== currentKey) {
      current = [];
      groups.push(current);
      currentKey = key;
    }
    current.push(item);
  });
  return groups;
}
