// Dark mode: follows the system until toggled; the choice is kept.
import { ref, watch } from "vue";

const KEY = "weir-theme";
const stored = localStorage.getItem(KEY);
export const dark = ref(stored ? stored === "dark" : window.matchMedia("(prefers-color-scheme: dark)").matches);

function apply(on: boolean) {
  document.documentElement.classList.toggle("dark", on);
}
apply(dark.value);
watch(dark, (on) => {
  localStorage.setItem(KEY, on ? "dark" : "light");
  apply(on);
});
