"""JUnit XML with one test case per gate, so CI systems show gates as tests."""

import xml.etree.ElementTree as ET

from onnxcar.pipeline.gates import GateResult


def junit_xml(gates: list[GateResult], *, suite: str, seconds: float) -> bytes:
    """A JUnit ``testsuites`` document: one ``testcase`` per gate, a ``failure`` where it failed."""
    failures = sum(not g.passed for g in gates)
    root = ET.Element("testsuites", tests=str(len(gates)), failures=str(failures), time=f"{seconds:.3f}")
    cases = ET.SubElement(root, "testsuite", name=suite, tests=str(len(gates)), failures=str(failures),
                          errors="0", time=f"{seconds:.3f}")
    for gate in gates:
        case = ET.SubElement(cases, "testcase", classname="onnxcar.gates", name=gate.name, time="0")
        if not gate.passed:
            ET.SubElement(case, "failure", message=gate.message, type="GateFailed").text = gate.message
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
