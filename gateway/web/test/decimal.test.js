import assert from "node:assert/strict";
import { test } from "node:test";

import * as dec from "../static/assets/js/decimal.js";

test("parse accepts decimal strings only", () => {
  assert.deepEqual(dec.parse("12.340"), { units: 12340n, scale: 3 });
  assert.deepEqual(dec.parse("-0.5"), { units: -5n, scale: 1 });
  assert.deepEqual(dec.parse(".5"), { units: 5n, scale: 1 });
  assert.deepEqual(dec.parse("5."), { units: 5n, scale: 0 });
  for (const bad of ["", ".", "-", "1e-7", "1,5", "abc", "1.2.3", " ", "0x10", 1.5, null, undefined]) {
    assert.equal(dec.parse(bad), null, String(bad));
  }
});

test("sums and differences are exact where floats are not", () => {
  assert.equal(0.1 + 0.2 === 0.3, false); // why this module exists
  assert.equal(dec.add("0.1", "0.2"), "0.3");
  assert.equal(dec.sub("60000.01", "59999.99"), "0.02");
  assert.equal(dec.sub("1", "1.5"), "-0.5");
  assert.equal(dec.add("1000.00", "-1000"), "0.00");
  assert.equal(dec.add("123456789012345678.000000000000000001", "1"), "123456789012345679.000000000000000001");
});

test("products keep every digit and never use exponents", () => {
  assert.equal(dec.mul("0.01", "60000.5"), "600.005");
  assert.equal(dec.mul("0.0000001", "0.0000001"), "0.00000000000001");
  assert.equal(dec.mul("-2", "0.35"), "-0.70");
  assert.equal(dec.mul("99999999999.99", "99999999999.99"), "9999999999998000000000.0001");
});

test("compare and sign", () => {
  assert.equal(dec.cmp("1.10", "1.1"), 0);
  assert.equal(dec.cmp("0.0001", "0.001"), -1);
  assert.equal(dec.cmp("-1", "-2"), 1);
  assert.equal(dec.sign("-0.000"), 0);
  assert.equal(dec.sign("-0.001"), -1);
  assert.equal(dec.isZero("0.00"), true);
  assert.throws(() => dec.cmp("1", "x"), TypeError);
});

test("isPositive is what the ticket accepts", () => {
  for (const ok of ["1", "0.001", ".5", "5."]) assert.equal(dec.isPositive(ok), true, ok);
  for (const bad of ["0", "0.000", "-1", "", "1e3", "abc"]) assert.equal(dec.isPositive(bad), false, bad);
});

test("round is half away from zero, to exactly the places asked", () => {
  assert.equal(dec.round("1.005", 2), "1.01");
  assert.equal(dec.round("1.0049", 2), "1.00");
  assert.equal(dec.round("-1.005", 2), "-1.01");
  assert.equal(dec.round("-0.001", 2), "0.00");
  assert.equal(dec.round("9.999", 2), "10.00");
  assert.equal(dec.round("60000", 2), "60000.00");
  assert.equal(dec.round("0.5", 0), "1");
  assert.equal(dec.round("123.456", 0), "123");
});

test("trim drops trailing fractional zeros only", () => {
  assert.equal(dec.trim("50.0500"), "50.05");
  assert.equal(dec.trim("10000.00"), "10000");
  assert.equal(dec.trim("100"), "100");
  assert.equal(dec.trim("-0.0"), "0");
});

test("places of an increment", () => {
  assert.equal(dec.places("0.01"), 2);
  assert.equal(dec.places("0.00001"), 5);
  assert.equal(dec.places("0.00010"), 4);
  assert.equal(dec.places("1"), 0);
  assert.equal(dec.places("10"), 0);
});
