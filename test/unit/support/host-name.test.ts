import { namesHost } from "../../support/host-name";

test("the host name counts only as a whole token", () => {
	expect(namesHost('x{namespace="fftest-t_mx78vmc2_7a"} 1', "vm")).toBe(false);
	expect(namesHost("process_virtual_memory_bytes 1", "vm")).toBe(false);
	expect(namesHost('x{instance="vm"} 1', "vm")).toBe(true);
	expect(namesHost('x{instance="vm:9100"} 1', "vm")).toBe(true);
	expect(namesHost('x{h="build.host-1.local"} 1', "host-1.local")).toBe(true);
	expect(namesHost('x{h="buildhost-1xlocal"} 1', "host-1.local")).toBe(false);
});
