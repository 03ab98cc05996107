import { createApp } from "vue";
import { createRouter, createWebHistory } from "vue-router";
import App from "./App.vue";
import Home from "./pages/Home.vue";
import { whenUnauthorized } from "./api";
import "./style.css";

// The home page comes with the first script; the other pages (and the
// filter editor's and the documentation's libraries) load when visited.
const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: "/", component: Home },
    { path: "/visualize/:state?", component: () => import("./pages/Visualize.vue") },
    { path: "/docs/:name?", component: () => import("./pages/Docs.vue") },
    { path: "/login", component: () => import("./pages/Login.vue") },
    { path: "/:rest(.*)*", component: () => import("./pages/NotFound.vue") },
  ],
});
whenUnauthorized(() => {
  if (router.currentRoute.value.path !== "/login") router.replace("/login");
});

createApp(App).use(router).mount("#app");
