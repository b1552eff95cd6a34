"""The ESP32 node's Arduino layer compiles on the host against stand-ins of the ESP32 APIs."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess

from cryptography.hazmat.primitives.asymmetric import rsa
import pytest

from custom_components.iotshield.keys import public_key_pem

FIRMWARE = Path(__file__).parent.parent / "firmware"
MAIN = FIRMWARE / "src" / "main.cpp"
CORE = sorted((FIRMWARE / "src" / "core").glob("*.cpp"))
STUBS = FIRMWARE / "host" / "esp32_stubs"
# The Arduino core supplies main() on the ESP32; this one exists so the linker checks that
# every core function main.cpp calls is defined, not only declared, and so that
# test_key_material_waits_for_the_radio can run setup() once.
DRIVER = "void setup();\nvoid loop();\n\nint main() {\n  setup();\n  loop();\n}\n"

# (name, text in main.cpp, its broken replacement, ESP-IDF major version, expected error)
BREAKAGES = [
    (
        "misspelled_call",
        "esp_mqtt_client_start(mqtt);",
        "esp_mqtt_client_begin(mqtt);",
        5,
        "esp_mqtt_client_begin",
    ),
    (
        "flat_config_on_idf5",
        "mqtt_cfg.broker.address.uri = MQTT_URI;",
        "mqtt_cfg.uri = MQTT_URI;",
        5,
        "has no member named 'uri'",
    ),
    (
        "nested_config_on_idf4",
        "mqtt_cfg.lwt_msg = will_payload.c_str();",
        "mqtt_cfg.session.last_will.msg = will_payload.c_str();",
        4,
        "has no member named 'session'",
    ),
    (
        "esp_random_header_missing_on_idf5",
        "#include <esp_random.h>\n",
        "",
        5,
        "'esp_fill_random' was not declared",
    ),
    (
        "printf_format_mismatch",
        'Serial.printf("[iotshield] %s\\n", line.c_str());',
        'Serial.printf("[iotshield] %d\\n", line.c_str());',
        5,
        "-Werror=format",
    ),
    (
        "arduino_string_as_std_string",
        "    return value.c_str();\n",
        "    return value;\n",
        4,
        "could not convert 'value' from 'const String'",
    ),
]


def compile_node(
    main_cpp: Path, out_dir: Path, idf_major: int, *, v1: bool = False, include: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Compile and link main.cpp with the core as the ESP32 build would, warnings as errors."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.fail("g++ is installed by scripts/setup")
    driver = out_dir / "driver.cpp"
    driver.write_text(DRIVER)
    return subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-DESP_IDF_VERSION_MAJOR={idf_major}",
            *(["-DWIRE_FORMAT_V1"] if v1 else []),
            *([f"-I{include}"] if include else []),
            f"-I{STUBS}",
            f"-I{FIRMWARE / 'src'}",
            str(main_cpp),
            *map(str, CORE),
            str(driver),
            "-lmbedcrypto",
            "-o",
            str(out_dir / "node"),
        ],
        capture_output=True,
        text=True,
        check=False,
        # The C locale keeps g++'s messages untranslated and its quotes ASCII for the checks.
        env={**os.environ, "LC_ALL": "C"},
    )


def test_build_switches_are_the_ones_main_cpp_reads() -> None:
    """The macros the builds set still select main.cpp's variants, so no build is a duplicate."""
    source = MAIN.read_text()
    assert "#ifdef WIRE_FORMAT_V1" in source
    assert "#if ESP_IDF_VERSION_MAJOR >= 5" in source
    assert CORE, "no core sources found"


@pytest.mark.parametrize("idf_major", [4, 5])
@pytest.mark.parametrize("v1", [False, True], ids=["v2", "v1"])
def test_main_compiles(tmp_path: Path, idf_major: int, v1: bool) -> None:
    """main.cpp and the core compile and link for each ESP-IDF major version and wire format."""
    result = compile_node(MAIN, tmp_path, idf_major, v1=v1)
    assert result.returncode == 0, f"main.cpp does not build:\n{result.stderr}"
    assert (tmp_path / "node").is_file()


@pytest.mark.parametrize(
    ("old", "new", "idf_major", "error"),
    [case[1:] for case in BREAKAGES],
    ids=[case[0] for case in BREAKAGES],
)
def test_broken_main_does_not_compile(
    tmp_path: Path, old: str, new: str, idf_major: int, error: str
) -> None:
    """A copy of main.cpp with one mistake is rejected, so the stand-ins are strict enough."""
    source = MAIN.read_text()
    assert source.count(old) == 1, f"main.cpp changed: update the breakage of {old!r}"
    broken = tmp_path / "main.cpp"
    broken.write_text(source.replace(old, new))
    result = compile_node(broken, tmp_path, idf_major)
    assert result.returncode != 0, "a broken main.cpp compiled against the stand-ins"
    assert error in result.stderr, result.stderr


def _run_setup(main_cpp: Path, out_dir: Path, private_key: rsa.RSAPrivateKey) -> str:
    """Build main.cpp with a real Home Assistant key, run setup() and loop(); return stderr."""
    include = out_dir / "include"
    include.mkdir(parents=True)
    pem = "".join(f"{line}\\n" for line in public_key_pem(private_key).splitlines())
    (include / "config.h").write_text(
        f'#include "{STUBS / "config.h"}"\n#undef HA_PUBLIC_KEY_PEM\n'
        f'#define HA_PUBLIC_KEY_PEM "{pem}"\n'
    )
    built = compile_node(main_cpp, out_dir, 5, include=include)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run(
        [str(out_dir / "node")], capture_output=True, text=True, check=False, timeout=60
    )
    return f"exit {ran.returncode}: {ran.stderr}"


def test_key_material_waits_for_the_radio(tmp_path: Path, private_key: rsa.RSAPrivateKey) -> None:
    """setup() switches the radio on before any key is drawn; drawn earlier, the run stops."""
    assert _run_setup(MAIN, tmp_path / "as_is", private_key) == "exit 0: "
    # The same firmware with the radio switched on only when Wi-Fi connects, after the keys.
    source = MAIN.read_text()
    radio = "  WiFi.mode(WIFI_STA);\n"
    connect = "  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);\n"
    assert source.count(radio) == source.count(connect) == 1, "main.cpp changed: update this"
    late = tmp_path / "main.cpp"
    late.write_text(source.replace(radio, "").replace(connect, radio + connect))
    result = _run_setup(late, tmp_path / "radio_late", private_key)
    assert "esp_fill_random before the radio is on" in result
    assert not result.startswith("exit 0")
