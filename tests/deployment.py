"""What the deployment files say, read the way Docker and Kubernetes read them (no engine here).

`parse_dockerfile` splits the Dockerfile into instructions per stage; `container_config` loads the
gateway configuration a container would load from its environment and the files it sees.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gateway.config import ENV_CONFIG_FILE, GatewayConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_CONFIG = "/etc/ocpp-gateway/gateway.toml"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword, its `--flag=value` options, and the rest."""

    keyword: str
    flags: dict[str, str]
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT/CMD/RUN (exec form); shell form is a test failure."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must use the exec form: {self.args}"
        return value


@dataclass
class Stage:
    """A FROM and the instructions after it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The ENV of this stage (`ENV K=V K2=V2`)."""
        result: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for item in shlex.split(instruction.args):
                key, sep, value = item.partition("=")
                assert sep, f"write ENV {key}=value, not the legacy 'ENV key value' form"
                result[key] = value
        return result

    def copied_files(self) -> dict[str, Path]:
        """Container path -> repository file, for each COPY of the build context into a file."""
        result: dict[str, Path] = {}
        for instruction in self.all("COPY"):
            if "from" in instruction.flags:
                continue
            *sources, destination = shlex.split(instruction.args)
            for source in sources:
                if destination.endswith("/") or len(sources) > 1:
                    target = PurePosixPath(destination) / PurePosixPath(source).name
                else:
                    target = PurePosixPath(destination)
                result[str(target)] = ROOT / source
        return result


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile (comments, parser directives and line continuations handled)."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], ""), rest).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return stages


def image() -> Stage:
    """The stage the image is made of: the Dockerfile's last one."""
    return parse_dockerfile(DOCKERFILE.read_text())[-1]


def image_files(stage: Stage | None = None) -> dict[str, str]:
    """Container path -> text of the files the image carries from the repository."""
    stage = stage or image()
    return {
        path: source.read_text()
        for path, source in stage.copied_files().items()
        if source.is_file()
    }


def container_config(env: Mapping[str, str], files: Mapping[str, str]) -> GatewayConfig:
    """The configuration a container loads: its OCPP_GATEWAY_* `env` and the `files` it sees.

    Like the gateway, the file named by OCPP_GATEWAY_CONFIG is read (it must be among `files`),
    an empty value means none, and the variables win over the file.
    """
    env = {k: v for k, v in env.items() if k.startswith("OCPP_GATEWAY_")}
    path = env.pop(ENV_CONFIG_FILE, "")
    if not path:
        return load_config(None, env)
    assert path in files, f"{ENV_CONFIG_FILE}={path}, but the container has no such file"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "gateway.toml"
        local.write_text(files[path])
        return load_config(local, env)


def port_of(bind: str) -> int:
    """The port of a host:port bind."""
    return int(bind.rpartition(":")[2])
