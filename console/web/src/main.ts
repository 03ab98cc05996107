import { createApp } from "vue";
import { createRouter, createWebHistory } from "vue-router";
import App from "./App.vue";
import Home from "./pages/Home.vue";
import Visualize from "./pages/Visualize.vue";
import NotFound from "./pages/NotFound.vue";
import Login from "./pages/Login.vue";
import Docs from "./pages/Docs.vue";
import { whenUnauthorized } from "./api";
import "./style.css";

const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: "/", component: Home },
    { path: "/visualize/:state?", component: Visualize },
    { path: "/docs/:name?", component: Docs },
    { path: "/login", component: Login },
    { path: "/:rest(.*)*", component: NotFound },
  ],
});
whenUnauthorized(() => {
  if (router.currentRoute.value.path !== "/login") router.replace("/login");
});

createApp(App).use(router).mount("#app");
