import t from 'tap';
import fc from 'fast-check';
import { actorOfGroup, actorOfKey, groupsOf, keyGroupOf, keyOfWindowId, routingProblem, MAX_KEY_GROUPS } from '../../src/runtime/key-groups.js';
import { windowId } from '../../src/runtime/window-operator.js';

t.test('every key group has exactly one actor, and each actor owns one contiguous range', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 600 }), (keyGroups, wanted) => {
      const r = { keyGroups, actors: Math.min(wanted, keyGroups) };
      // Independent of the code: the owner of each group found by scanning the ranges.
      const owners = new Array<number>(keyGroups).fill(-1);
      for (let a = 0; a < r.actors; a++) {
        const { from, to } = groupsOf(a, r);
        if (!(from < to)) return false; // every actor owns at least one group
        for (let kg = from; kg < to; kg++) {
          if (owners[kg] !== -1) return false;
          owners[kg] = a;
        }
      }
      return owners.every((a, kg) => a !== -1 && a === actorOfGroup(kg, r));
    }),
  );
});

t.test('a key always lands in the same group, whatever the number of actors', async (t) => {
  fc.assert(
    fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 64 }), (key, kgs, actors) => {
      const r = { keyGroups: kgs, actors: Math.min(actors, kgs) };
      const kg = keyGroupOf(key, kgs);
      const { from, to } = groupsOf(actorOfKey(key, r), r);
      return kg >= 0 && kg < kgs && kg >= from && kg < to;
    }),
  );
  t.equal(keyGroupOf('#nats', 128), keyGroupOf('#nats', 128), 'stable');
});

t.test('the key of a window id, keys with separators included', async (t) => {
  fc.assert(fc.property(fc.string(), fc.integer(), fc.integer(), (key, start, end) => keyOfWindowId(windowId(key, start, end)) === key));
  t.equal(keyOfWindowId(windowId('a\u0000b', 0, 60_000)), 'a\u0000b');
});

t.test('routing problems name the flag', async (t) => {
  t.equal(routingProblem({ keyGroups: 128, actors: 2 }), undefined);
  t.match(routingProblem({ keyGroups: 0, actors: 1 }), /--key-groups/);
  t.match(routingProblem({ keyGroups: MAX_KEY_GROUPS + 1, actors: 1 }), /--key-groups/);
  t.match(routingProblem({ keyGroups: 4, actors: 5 }), /--partitions/);
});
