import { toast } from "sonner";

/** Copy `text`, and say so (or say why not). */
export async function copyText(text: string, what: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    toast.success(`${what} copied`);
  } catch {
    toast.error(`Could not copy the ${what.toLowerCase()}: the browser refused clipboard access`);
  }
}
